"""The go/no-go report: intervals and decisions from two tiny evaluated runs, refusal of incomparable
runs, and the aggregation over seeds."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception_shared.errors import DataError
from saliency_entropy.report import IncomparableRunsError, make_report, stability
from saliency_entropy.stats import PairedIG, percentile_interval


def _per_image(run: Path, dataset: str) -> dict[str, tuple[float, float]]:
    with open(run / "evaluation" / "per_image.csv", newline="") as f:
        return {r["image"]: (float(r["ig_bits"]), float(r["n_fixations"])) for r in csv.DictReader(f) if r["dataset"] == dataset}


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_report_measures_every_criterion_with_its_interval(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    report = make_report(trained_runs["baseline"], trained_runs["entropy_reg"], out_dir=tmp_path / "r")
    for name in ("report.md", "report.json", "per_seed.csv", "criteria.png", "curves.png", "bias_maps.png", "examples.png"):
        assert (tmp_path / "r" / name).is_file(), name
    base = json.loads((trained_runs["baseline"] / "evaluation" / "metrics.json").read_text())
    reg = json.loads((trained_runs["entropy_reg"] / "evaluation" / "metrics.json").read_text())
    c = {x["name"]: x for x in report["criteria"]}
    hb, hr = base["bias_map"]["entropy_nats"], reg["bias_map"]["entropy_nats"]
    entropy = c["bias entropy up"]
    assert entropy["measured"] == pytest.approx(100 * (hr - hb) / hb) and entropy["low"] == entropy["high"]
    assert entropy["ceiling_pct"] == pytest.approx(100 * (math.log(96 * 128) - hb) / hb)
    # the point estimates are the evaluations' IG; the intervals are the paired bootstrap over the same images
    ib, ir = base["datasets"]["mit1003_val"]["ig"], reg["datasets"]["mit1003_val"]["ig"]
    assert c["in-domain IG drop"]["measured"] == pytest.approx(100 * (ib - ir) / abs(ib))
    ob, orr = base["datasets"]["cat2000"]["ig"], reg["datasets"]["cat2000"]["ig"]
    gain = c["OOD IG gain"]
    assert gain["measured"] == pytest.approx(orr - ob) and gain["low"] <= gain["measured"] <= gain["high"]
    b, r = _per_image(trained_runs["baseline"], "cat2000"), _per_image(trained_runs["entropy_reg"], "cat2000")
    names = sorted(b)
    paired = PairedIG(np.array([[b[k][0] for k in names]]), np.array([[r[k][0] for k in names]]), np.array([b[k][1] for k in names]))
    again = percentile_interval(paired.gain, len(names), resamples=2000, confidence=0.95, seed=0)
    assert (gain["low"], gain["high"]) == pytest.approx((again.low, again.high))
    expected = "PASS" if gain["low"] > 0 else "FAIL" if gain["high"] <= 0 else "INCONCLUSIVE"
    assert gain["decision"] == expected
    decisions = [x["decision"] for x in report["criteria"]]
    want = "NO-GO" if "FAIL" in decisions else "GO" if set(decisions) == {"PASS"} else "INCONCLUSIVE"
    assert report["verdict"] == want and c["training stable"]["decision"] == "PASS"
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"**Verdict: {report['verdict']}**" in md and "RANDOM INIT" in md and "TOY settings" in md
    assert "largest possible increase" in md and "squashed to 96x128" in md
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == report["verdict"]


@pytest.mark.slow  # uses the trained_runs fixture
def test_thresholds_come_from_the_config(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    lenient = [
        "criteria.min_entropy_increase_pct=-100",
        "criteria.max_in_domain_ig_drop_pct=1000",
        "criteria.min_ood_ig_gain_bits=-100",
    ]
    go = make_report(trained_runs["baseline"], trained_runs["entropy_reg"], out_dir=tmp_path / "a", overrides=lenient)
    assert go["verdict"] == "GO" and go["thresholds"]["min_ood_ig_gain_bits"] == -100
    strict = make_report(
        trained_runs["baseline"],
        trained_runs["entropy_reg"],
        out_dir=tmp_path / "b",
        overrides=["criteria.min_entropy_increase_pct=1000"],
    )
    assert strict["verdict"] == "NO-GO"
    assert {x["name"]: x for x in strict["criteria"]}["bias entropy up"]["decision"] == "FAIL"


@pytest.mark.slow  # uses the trained_runs fixture
def test_report_refuses_runs_that_differ_in_more_than_the_regularizer(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(trained_runs["entropy_reg"], changed)
    cfg = yaml.safe_load((changed / "config.yaml").read_text())
    cfg["optim"]["lr"] = 0.5
    cfg["data"]["image_size"] = [64, 128]
    (changed / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(IncomparableRunsError) as e:
        make_report(trained_runs["baseline"], changed, out_dir=tmp_path / "r")
    assert "config optim.lr: 0.02" in str(e.value) and "data.image_size" in str(e.value)
    split = json.loads((changed / "split.json").read_text())
    split["val"], split["train"] = split["train"][:3], split["val"] + split["train"][3:]
    (changed / "config.yaml").write_text((trained_runs["entropy_reg"] / "config.yaml").read_text())
    (changed / "split.json").write_text(json.dumps(split))
    with pytest.raises(IncomparableRunsError, match=r"image split \(split.json\) differs"):
        make_report(trained_runs["baseline"], changed, out_dir=tmp_path / "r")


@pytest.mark.slow  # uses the trained_runs fixture
def test_pairs_over_seeds_aggregate_mean_and_spread(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    """Two pairs (the second a copy under another seed): per-seed table, mean +- sd, the range over seeds."""
    pairs = []
    for seed in (0, 1):
        pair = []
        for arm in ("baseline", "entropy_reg"):
            run = tmp_path / f"seed_{seed}" / arm
            shutil.copytree(trained_runs[arm], run)
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            cfg["seed"] = seed
            (run / "config.yaml").write_text(yaml.safe_dump(cfg))
            pair.append(run)
        pairs.append(pair)
    report = make_report([p[0] for p in pairs], [p[1] for p in pairs], out_dir=tmp_path / "r")
    assert report["seeds"] == [0, 1] and len(report["per_seed"]) == 2
    agg = report["aggregates"]["bias_entropy_increase_pct"]
    assert agg["sd"] == pytest.approx(0.0, abs=1e-12) and agg["seeds"] == 2
    single = make_report(trained_runs["baseline"], trained_runs["entropy_reg"], out_dir=tmp_path / "s")
    for a, b in zip(report["criteria"], single["criteria"]):
        assert a["measured"] == pytest.approx(b["measured"])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Per seed" in md and "mean +- sd" in md and md.count("| entropy_reg |") == 2
    with pytest.raises(IncomparableRunsError, match="config seed"):
        make_report([pairs[0][0]], [pairs[1][1]], out_dir=tmp_path / "x")


def test_stability_flags_nan_unfinished_and_divergent_runs() -> None:
    good = [{"train/loss": 9.0, "val/nll": 9.0}, {"train/loss": 8.5, "val/nll": 8.6}]
    assert stability(good, True, 0.5)["stable"]
    assert not stability(good, False, 0.5)["stable"]
    assert not stability([*good, {"train/loss": math.nan, "val/nll": 8.5}], True, 0.5)["stable"]
    diverged = stability([*good, {"train/loss": 9.5, "val/nll": 9.4}], True, 0.5)
    assert not diverged["stable"] and diverged["max_val_nll_rise"] == pytest.approx(0.8)


@pytest.mark.slow  # uses the trained_runs fixture
def test_report_needs_evaluated_runs(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `saliency-entropy evaluate"):
        make_report(tmp_path, trained_runs["entropy_reg"])
