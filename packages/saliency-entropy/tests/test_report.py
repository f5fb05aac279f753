"""The go/no-go report from two tiny evaluated runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from perception_shared.errors import DataError
from saliency_entropy.report import make_report, stability


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_report_measures_every_criterion_from_the_evaluations(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    report = make_report(trained_runs["baseline"], trained_runs["entropy_reg"], out_dir=tmp_path / "r")
    for name in ("report.md", "report.json", "curves.png", "bias_maps.png", "examples.png", "ood_categories.png"):
        assert (tmp_path / "r" / name).is_file(), name
    base = json.loads((trained_runs["baseline"] / "evaluation" / "metrics.json").read_text())
    reg = json.loads((trained_runs["entropy_reg"] / "evaluation" / "metrics.json").read_text())
    c = {x["name"]: x for x in report["criteria"]}
    hb, hr = base["bias_map"]["entropy_nats"], reg["bias_map"]["entropy_nats"]
    assert c["bias entropy up"]["measured"] == pytest.approx(100 * (hr - hb) / hb)
    ib, ir = base["datasets"]["mit1003_val"]["ig"], reg["datasets"]["mit1003_val"]["ig"]
    assert c["in-domain IG drop"]["measured"] == pytest.approx(100 * (ib - ir) / abs(ib))
    ob, orr = base["datasets"]["cat2000"]["ig"], reg["datasets"]["cat2000"]["ig"]
    assert c["OOD IG gain"]["measured"] == pytest.approx(orr - ob)
    assert c["OOD IG gain"]["passed"] == (orr - ob > 0.0)
    assert c["training stable"]["passed"]
    assert report["verdict"] == ("GO" if all(x["passed"] for x in report["criteria"]) else "NO-GO")
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"**Verdict: {report['verdict']}**" in md and "randomly initialized" in md
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == report["verdict"]


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
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
    assert not {x["name"]: x for x in strict["criteria"]}["bias entropy up"]["passed"]


def test_stability_flags_nan_unfinished_and_divergent_runs() -> None:
    good = [{"train/loss": 9.0, "val/nll": 9.0}, {"train/loss": 8.5, "val/nll": 8.6}]
    assert stability(good, True, 0.5)["stable"]
    assert not stability(good, False, 0.5)["stable"]
    assert not stability([*good, {"train/loss": math.nan, "val/nll": 8.5}], True, 0.5)["stable"]
    diverged = stability([*good, {"train/loss": 9.5, "val/nll": 9.4}], True, 0.5)
    assert not diverged["stable"] and diverged["max_val_nll_rise"] == pytest.approx(0.8)


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_report_needs_evaluated_runs(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `saliency-entropy evaluate"):
        make_report(tmp_path, trained_runs["entropy_reg"])
