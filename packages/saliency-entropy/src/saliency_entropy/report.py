"""Go/no-go report: does the bias-map entropy regularizer help out of domain without hurting in domain?

Reads pairs of evaluated runs, a baseline and an entropy-regularized run per seed (``<run>/evaluation/``
from ``evaluate``, ``<run>/training_history.csv``, and the runs' ``config.yaml``, ``manifest.json``,
``split.json``, ``center_prior.json``) and writes ``report.md``, ``report.json``, ``per_seed.csv`` and
figures (``criteria.png``, ``curves.png``, ``bias_maps.png``, ``examples.png``, ``ood_categories.png``).

Comparable runs only: the runs may differ in the regularizer (``entropy.weight``, ``entropy.compute_every``)
and, between pairs, in the seed; anything else (split, center prior, backbone weights, image size and
aspect mode, optimization schedule, global batch, data files) is refused with the difference named. Paths,
worker counts, checkpoint cadence and report thresholds do not count. Data files are compared through the
manifests' content hashes (``allow_data_mismatch`` turns that refusal into a warning in the report).

Criteria (thresholds in the ``criteria`` section of a config; by default the first entropy run's own
``config.yaml``), each with its uncertainty (``saliency_entropy.stats``) and a decision PASS, FAIL or
INCONCLUSIVE (the interval straddles the threshold):

1. bias-map entropy rises: ``100 (H_reg - H_base) / H_base >= min_entropy_increase_pct``, per seed; the
   spread over seeds decides; the ceiling, ``100 (log(H W) - H_base) / H_base`` (the uniform map), is shown;
2. in-domain IG (MIT1003 val, bits/fixation) falls by at most ``max_in_domain_ig_drop_pct`` percent of
   the baseline's: paired bootstrap interval over images (mean over seeds);
3. out-of-domain IG (CAT2000) improves: ``IG_reg - IG_base > min_ood_ig_gain_bits``: paired bootstrap
   interval over images (mean over seeds);
4. the regularized training is stable in every seed: finished (``final_model.pth``), finite losses, and
   validation NLL never more than ``max_val_nll_rise`` nats/fixation above its best so far; the spread of
   that rise over seeds decides.

Verdict: GO when all four pass, NO-GO when one fails, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception_shared.config import load_config
from perception_shared.errors import DataError, UserError
from perception_shared.figures import (
    TRAIN_COLOR,
    VAL_COLOR,
    plt,
    quantity,
    run_status,
    save_figure,
    set_header,
    set_title,
    subtitle,
)
from perception_shared.jsonio import write_json
from perception_shared.manifest import check_same_data, load_manifest

from . import __version__
from .config import CriteriaConfig, TrainConfig
from .figures import LABELS, per_cell, show_density, show_stimulus
from .stats import PairedIG, decide, entropy_ceiling_pct, percentile_interval, seed_spread, verdict

EVAL_DIR = "evaluation"
# Config keys that do not change what a run computes (paths, workers, checkpoint cadence, report settings).
IRRELEVANT = (
    "data.mit_root",
    "data.cat2000_root",
    "data.num_workers",
    "data.eval_batch_size",
    "model.weights_file",
    "loop.checkpoint_every",
    "loop.keep_last",
    "loop.log_every",
    "eval.examples",
    "eval.mit_val",
    "eval.cat2000",
    "criteria.",
    "runtime.",
)
REGULARIZER = ("entropy.weight", "entropy.compute_every")


class IncomparableRunsError(UserError):
    """Two runs that are to be compared differ in more than the regularizer (and the seed)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _load_run(run: Path) -> dict[str, Any]:
    ev = run / EVAL_DIR
    metrics_path = ev / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path} does not exist; run `saliency-entropy evaluate {run}` first")
    history_path = run / "training_history.csv"
    if not history_path.is_file():
        raise DataError(f"{history_path} does not exist; {run} is not a training run directory")
    with open(history_path, newline="", encoding="utf-8") as f:
        history = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with open(ev / "per_image.csv", newline="", encoding="utf-8") as f:
        per_image = list(csv.DictReader(f))
    examples = {}
    if (ev / "examples.npz").is_file():
        with np.load(ev / "examples.npz", allow_pickle=False) as z:
            examples = {k: z[k] for k in z.files}
    config_path = run / "config.yaml"
    return {
        "dir": run,
        "metrics": json.loads(metrics_path.read_text()),
        "per_image": per_image,
        "history": history,
        "bias": np.load(ev / "bias_map.npy", allow_pickle=False),
        "examples": examples,
        "finished": (run / "final_model.pth").is_file(),
        "config": yaml.safe_load(config_path.read_text()) if config_path.is_file() else None,
        "manifest": load_manifest(run, missing_ok=True),
        "eval_manifest": load_manifest(ev, missing_ok=True),
        "split": _read_json(run / "split.json"),
        "center_prior": _read_json(run / "center_prior.json"),
    }


def _number(v: str) -> float | str:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def stability(history: list[dict[str, Any]], finished: bool, max_rise: float) -> dict[str, Any]:
    """Finished, finite losses, and the largest rise of val/nll above its running minimum (nats)."""
    keys = [k for k in (history[0] if history else {}) if k.startswith(("train/loss", "train/nll", "val/nll"))]
    finite = all(isinstance(r.get(k), float) and math.isfinite(r[k]) for r in history for k in keys if r.get(k) != "")
    val = [r["val/nll"] for r in history if isinstance(r.get("val/nll"), float)]
    best, rise = math.inf, 0.0
    for v in val:
        best = min(best, v)
        rise = max(rise, v - best)
    return {
        "finished": finished,
        "finite_losses": finite,
        "max_val_nll_rise": rise,
        "epochs": len(history),
        "stable": bool(finished and finite and rise <= max_rise and len(history) > 0),
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


def _ignored(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in (*IRRELEVANT, *allowed))


def run_differences(a: dict[str, Any], b: dict[str, Any], allowed: tuple[str, ...] = ()) -> list[str]:
    """What makes two loaded runs incomparable, each difference named (empty: comparable).

    ``allowed``: config keys that may differ (the regularizer within a pair, the seed between pairs).
    """
    la, lb = a["dir"], b["dir"]
    out = []
    if a["config"] is None or b["config"] is None:
        missing = la if a["config"] is None else lb
        return [f"{missing} has no config.yaml, so its settings cannot be compared"]
    fa, fb = _flatten(a["config"]), _flatten(b["config"])
    for key in sorted(set(fa) | set(fb)):
        if not _ignored(key, allowed) and fa.get(key) != fb.get(key):
            out.append(f"config {key}: {fa.get(key)!r} ({la}) vs {fb.get(key)!r} ({lb})")
    for name, what in (("split", "image split (split.json)"), ("center_prior", "center prior (center_prior.json)")):
        xa, xb = a[name], b[name]
        if xa is not None and xb is not None:
            keys = ("train", "val") if name == "split" else ("bandwidth", "uniform_weight", "grid", "n_fixations")
            if any(xa.get(k) != xb.get(k) for k in keys):
                out.append(f"{what} differs between {la} and {lb}")
    ma, mb = a["manifest"], b["manifest"]
    if ma is not None and mb is not None:
        wa, wb = (ma.get("weights") or [{}])[0], (mb.get("weights") or [{}])[0]
        for key in ("identifier", "pretrained", "sha256"):
            if wa.get(key) != wb.get(key):
                out.append(f"backbone weights {key}: {wa.get(key)!r} ({la}) vs {wb.get(key)!r} ({lb})")
        ga = int(ma.get("world_size") or 1) * int(fa.get("data.batch_size") or 0)
        gb = int(mb.get("world_size") or 1) * int(fb.get("data.batch_size") or 0)
        if ga != gb:
            out.append(f"global batch (world size x data.batch_size): {ga} ({la}) vs {gb} ({lb})")
    return out


def check_comparable(pairs: list[tuple[dict[str, Any], dict[str, Any]]], *, allow_data_mismatch: bool = False) -> list[str]:
    """Refuse runs that differ in more than the regularizer (and, between pairs, the seed).

    Returns the data differences found when ``allow_data_mismatch`` (for the report to show).
    """
    problems = []
    first = pairs[0][0]
    for base, reg in pairs:
        problems += run_differences(base, reg, REGULARIZER)
        if base is not first:
            problems += run_differences(first, base, ("seed",))
            problems += run_differences(pairs[0][1], reg, ("seed",))
    if problems:
        raise IncomparableRunsError(
            "refusing to compare runs that differ in more than the regularizer: " + "; ".join(problems)
        )
    runs = [r for pair in pairs for r in pair]
    notes = check_same_data({str(r["dir"]): r["manifest"] for r in runs}, allow=allow_data_mismatch)
    evaluated = {f"{r['dir']} (evaluation)": r["eval_manifest"] for r in runs if r["eval_manifest"] is not None}
    if len(evaluated) == len(runs):
        notes += check_same_data(evaluated, allow=allow_data_mismatch)
    return notes


def _paired_table(pairs: list[tuple[dict[str, Any], dict[str, Any]]], dataset: str) -> PairedIG | None:
    """Per-image IG of every pair on ``dataset``, aligned by image name (the same images in every run)."""
    base_rows, reg_rows, counts = [], [], None
    for base, reg in pairs:
        tables = []
        for run in (base, reg):
            rows = {r["image"]: r for r in run["per_image"] if r["dataset"] == dataset}
            tables.append(rows)
        if not tables[0] or not tables[1]:
            return None
        names = sorted(tables[0])
        if sorted(tables[1]) != names or (counts is not None and names != counts[0]):
            raise IncomparableRunsError(
                f"{dataset}: the runs were evaluated on different images ({base['dir']} vs {reg['dir']}); "
                "evaluate them with the same data"
            )
        n = np.array([float(tables[0][k]["n_fixations"]) for k in names])
        if any(float(tables[1][k]["n_fixations"]) != n[i] for i, k in enumerate(names)):
            raise IncomparableRunsError(f"{dataset}: the runs count different fixations on the same images")
        counts = (names, n)
        base_rows.append([float(tables[0][k]["ig_bits"]) for k in names])
        reg_rows.append([float(tables[1][k]["ig_bits"]) for k in names])
    assert counts is not None
    return PairedIG(np.array(base_rows), np.array(reg_rows), counts[1])


def _criteria(pairs: list[tuple[dict[str, Any], dict[str, Any]]], c: CriteriaConfig) -> list[dict[str, Any]]:
    out = []
    hb = [b["metrics"]["bias_map"]["entropy_nats"] for b, _ in pairs]
    hr = [r["metrics"]["bias_map"]["entropy_nats"] for _, r in pairs]
    size = pairs[0][0]["metrics"]["bias_map"]["image_size"]
    inc = [100.0 * (r - b) / b for b, r in zip(hb, hr)]
    spread = seed_spread(inc)
    ceilings = [entropy_ceiling_pct(b, size[0], size[1]) for b in hb]
    cannot_pass = max(ceilings) < c.min_entropy_increase_pct
    out.append(
        {
            "name": "bias entropy up",
            "measured": spread["mean"],
            "low": spread["min"],
            "high": spread["max"],
            "uncertainty": f"range over {len(pairs)} seed(s)",
            "per_seed": inc,
            "spread": spread,
            "unit": "%",
            "rule": f">= {c.min_entropy_increase_pct}",
            "ceiling_pct": float(np.mean(ceilings)),
            "ceiling_note": f"largest possible increase: {np.mean(ceilings):.2f}% (uniform map, log({size[0]}x{size[1]}) = "
            f"{math.log(size[0] * size[1]):.3f} nats)"
            + ("; the threshold is above it: this criterion cannot pass" if cannot_pass else ""),
            "cannot_pass": cannot_pass,
            "decision": decide(spread["min"], spread["max"], c.min_entropy_increase_pct, ">="),
        }
    )
    boot = {"resamples": c.bootstrap_resamples, "confidence": c.confidence, "seed": c.bootstrap_seed}
    label = f"paired bootstrap over images, {c.confidence:.0%}, {c.bootstrap_resamples} resamples"
    mit = _paired_table(pairs, "mit1003_val")
    if mit is not None:
        iv = percentile_interval(mit.drop_pct, len(mit.n_fixations), **boot)
        out.append(
            {
                "name": "in-domain IG drop",
                "measured": iv.estimate,
                "low": iv.low,
                "high": iv.high,
                "uncertainty": label,
                "per_seed": [float(v) for v in mit.per_seed_drop_pct()],
                "unit": "% of baseline",
                "rule": f"<= {c.max_in_domain_ig_drop_pct}",
                "decision": decide(iv.low, iv.high, c.max_in_domain_ig_drop_pct, "<="),
            }
        )
    else:
        out.append(_missing("in-domain IG drop", "needs mit1003_val in every evaluation"))
    ood = _paired_table(pairs, "cat2000")
    if ood is not None:
        iv = percentile_interval(ood.gain, len(ood.n_fixations), **boot)
        out.append(
            {
                "name": "OOD IG gain",
                "measured": iv.estimate,
                "low": iv.low,
                "high": iv.high,
                "uncertainty": label,
                "per_seed": [float(v) for v in ood.per_seed_gain()],
                "unit": "bits/fixation",
                "rule": f"> {c.min_ood_ig_gain_bits}",
                "decision": decide(iv.low, iv.high, c.min_ood_ig_gain_bits, ">"),
            }
        )
    else:
        out.append(_missing("OOD IG gain", "needs cat2000 in every evaluation"))
    stab = [stability(r["history"], r["finished"], c.max_val_nll_rise) for _, r in pairs]
    rises = seed_spread([s["max_val_nll_rise"] for s in stab])
    broken = not all(s["finished"] and s["finite_losses"] and s["epochs"] > 0 for s in stab)
    out.append(
        {
            "name": "training stable",
            "measured": rises["mean"],
            "low": rises["min"],
            "high": rises["max"],
            "uncertainty": f"range over {len(pairs)} seed(s)",
            "per_seed": [s["max_val_nll_rise"] for s in stab],
            "spread": rises,
            "unit": "nats/fixation max val NLL rise",
            "rule": f"finished, finite, rise <= {c.max_val_nll_rise}",
            "decision": "FAIL" if broken else decide(rises["min"], rises["max"], c.max_val_nll_rise, "<="),
        }
    )
    for x in out:
        x["passed"] = x["decision"] == "PASS"
    return out


def _missing(name: str, why: str) -> dict[str, Any]:
    return {"name": name, "measured": None, "low": None, "high": None, "uncertainty": "", "unit": "", "rule": why, "decision": "FAIL"}


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["epoch"], r[key]) for r in history if isinstance(r.get(key), float) and isinstance(r.get("epoch"), float)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plot_curves(base: dict[str, Any], reg: dict[str, Any], sub: str, path: Path) -> Path:
    """Validation and training curves of both runs: train blue and val orange as everywhere, the
    baseline dashed and the entropy-regularized run solid."""
    keys = ["nll", "ig", "bias_entropy_bits"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    for ax, key in zip(axes, keys):
        qty = quantity(key, LABELS)
        for run, label, style in ((base, "baseline", "--"), (reg, "entropy-reg", "-")):
            for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
                x, y = _series(run["history"], f"{split}/{key}")
                if x:
                    ax.plot(x, y, style, color=color, marker="o", ms=3, label=f"{label} {split}")
        set_title(ax, qty.label[:1].upper() + qty.label[1:])
        ax.set_xlabel("epoch")
        ax.set_ylabel(qty.axis_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    set_header(fig, "training curves: baseline (dashed) and entropy-regularized (solid)", sub)
    return save_figure(fig, path)


def _plot_bias_maps(base: dict[str, Any], reg: dict[str, Any], sub: str, path: Path) -> Path:
    """Both runs' bias maps on one colour scale, with their entropies in bits."""
    vmax = float(max(np.exp(base["bias"]).max(), np.exp(reg["bias"]).max()))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    for ax, run, label in ((axes[0], base, "baseline"), (axes[1], reg, "entropy-reg")):
        info = run["metrics"]["bias_map"]
        bits = info["entropy_nats"] / math.log(2)
        title = f"{label}: entropy {bits:.3f} bits ({info['entropy_fraction_of_max']:.2%} of the maximum)"
        im = show_density(fig, ax, run["bias"], title, "", vmax=vmax, colorbar=False)
    factor = _grid_factor(base["config"])
    fig.colorbar(im, ax=list(axes), fraction=0.03).set_label(per_cell(factor))
    set_header(fig, "bias maps: each model's fixation density on images without content", sub)
    return save_figure(fig, path)


def _grid_factor(config: dict[str, Any] | None) -> int:
    """The saliency-grid cell side (pixels) of a run's config (``model.saliency_map_factor``)."""
    return int(((config or {}).get("model") or {}).get("saliency_map_factor", 1))


def _plot_examples(base: dict[str, Any], reg: dict[str, Any], dataset: str, sub: str, path: Path) -> Path | None:
    eb, er = base["examples"], reg["examples"]
    key = f"{dataset}_index"
    if key not in eb or key not in er or not np.array_equal(eb[key], er[key]) or len(eb[key]) == 0:
        return None
    k = len(eb[key])
    label = per_cell(_grid_factor(base["config"]))
    fig, axes = plt.subplots(k, 3, figsize=(11, 2.9 * k + 1.0), squeeze=False, layout="constrained")
    for j in range(k):
        img, fix = eb[f"{dataset}_image_{j}"], eb[f"{dataset}_fixations_{j}"]
        show_stimulus(axes[j, 0], img, f"image {int(eb[key][j])}: {len(fix)} fixations", fix)
        maps = [run[f"{dataset}_log_density_{j}"] for run in (eb, er)]
        vmax = float(max(np.exp(m).max() for m in maps))  # one scale per row: the two models compare
        for col, lp, name in ((1, maps[0], "baseline"), (2, maps[1], "entropy-reg")):
            im = show_density(fig, axes[j, col], lp, name, "", extent=(0, img.shape[1], img.shape[0], 0), vmax=vmax, colorbar=False)
        fig.colorbar(im, ax=[axes[j, 1], axes[j, 2]], fraction=0.03).set_label(label, fontsize=8)
    set_header(fig, f"{dataset}: predicted fixation density, baseline vs entropy-regularized", sub)
    return save_figure(fig, path)


def _plot_categories(base: dict[str, Any], reg: dict[str, Any], sub: str, path: Path) -> Path | None:
    cb = base["metrics"]["datasets"].get("cat2000", {}).get("per_category")
    cr = reg["metrics"]["datasets"].get("cat2000", {}).get("per_category")
    if not cb or not cr:
        return None
    cats = sorted(set(cb) & set(cr))
    x = np.arange(len(cats))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(cats) + 2), 4.2), layout="constrained")
    ax.bar(x - 0.2, [cb[c]["ig"] for c in cats], 0.4, label="baseline")
    ax.bar(x + 0.2, [cr[c]["ig"] for c in cats], 0.4, label="entropy-reg")
    ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("CAT2000 category")
    ax.set_ylabel(quantity("ig").axis_label)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    set_header(fig, "CAT2000 information gain over the center prior, per category", sub)
    return save_figure(fig, path)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def _plot_criteria(criteria: list[dict[str, Any]], verdict_: str, sub: str, path: Path) -> Path:
    """Each criterion's estimate, interval and per-seed values against its threshold (and the entropy
    criterion's ceiling; a threshold above it is marked CANNOT PASS)."""
    shown = [c for c in criteria if c["measured"] is not None]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.8 * len(shown), 4.2), squeeze=False, layout="constrained")
    colors = {"PASS": "tab:green", "FAIL": "tab:red", "INCONCLUSIVE": "tab:orange"}
    for ax, c in zip(axes[0], shown):
        color = colors[c["decision"]]
        ax.errorbar([0], [c["measured"]], yerr=[[c["measured"] - c["low"]], [c["high"] - c["measured"]]], fmt="o", color=color, capsize=6)
        seeds = c.get("per_seed") or []
        ax.scatter(np.linspace(0.15, 0.35, len(seeds)) if len(seeds) > 1 else [0.25] * len(seeds), seeds, s=12, color="gray", label="per seed")
        threshold = float(c["rule"].split()[-1])
        ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {c['rule']}")
        if c.get("ceiling_pct") is not None:
            ax.axhline(c["ceiling_pct"], color="tab:blue", ls=":", lw=1, label=f"ceiling {c['ceiling_pct']:.1f}")
        ax.set_xlim(-0.5, 0.8)
        ax.set_xticks([])
        ax.set_xlabel(f"estimate and interval ({c['uncertainty']})", fontsize=7)
        decision = "CANNOT PASS (threshold above ceiling)" if c.get("cannot_pass") else c["decision"]
        set_title(ax, f"{c['name']}: {decision}")
        ax.title.set_color(color)
        ax.set_ylabel(c["unit"], fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(axis="y", alpha=0.3)
    set_header(fig, f"go/no-go criteria: verdict {verdict_}", sub)
    return save_figure(fig, path)


def _seed_of(run: dict[str, Any]) -> Any:
    return (run["config"] or {}).get("seed")


def _per_seed_rows(pairs: list[tuple[dict[str, Any], dict[str, Any]]], c: CriteriaConfig) -> list[dict[str, Any]]:
    rows = []
    for base, reg in pairs:
        mb, mr = base["metrics"], reg["metrics"]
        hb, hr = mb["bias_map"]["entropy_nats"], mr["bias_map"]["entropy_nats"]
        row: dict[str, Any] = {
            "seed": _seed_of(base),
            "baseline_run": str(base["dir"]),
            "entropy_run": str(reg["dir"]),
            "bias_entropy_base_nats": hb,
            "bias_entropy_reg_nats": hr,
            "bias_entropy_increase_pct": 100.0 * (hr - hb) / hb,
        }
        for ds in ("mit1003_val", "cat2000"):
            if ds in mb["datasets"] and ds in mr["datasets"]:
                row[f"{ds}_ig_base"] = mb["datasets"][ds]["ig"]
                row[f"{ds}_ig_reg"] = mr["datasets"][ds]["ig"]
        st = stability(reg["history"], reg["finished"], c.max_val_nll_rise)
        row["reg_max_val_nll_rise"] = st["max_val_nll_rise"]
        row["reg_stable"] = st["stable"]
        row["entropy_dose"] = (mr.get("entropy_dose") or {}).get("dose")
        rows.append(row)
    return rows


def make_report(
    baseline_runs: str | Path | list[str | Path],
    entropy_runs: str | Path | list[str | Path],
    *,
    out_dir: str | Path | None = None,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    allow_data_mismatch: bool = False,
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """Write the report (see the module docstring) for one pair of runs or one pair per seed (lists of
    equal length, paired in order) and return its JSON content. ``reference``: an evaluated run (e.g. the
    published DeepGaze III from ``import-deepgaze``) reported beside the pairs (``reference_row``)."""
    bases = [Path(baseline_runs)] if isinstance(baseline_runs, (str, Path)) else [Path(r) for r in baseline_runs]
    regs = [Path(entropy_runs)] if isinstance(entropy_runs, (str, Path)) else [Path(r) for r in entropy_runs]
    if not bases or len(bases) != len(regs):
        raise UserError(f"report needs baseline and entropy runs in pairs; got {len(bases)} and {len(regs)}")
    pairs = [(_load_run(b), _load_run(r)) for b, r in zip(bases, regs)]
    data_notes = check_comparable(pairs, allow_data_mismatch=allow_data_mismatch)
    cfg_path = Path(config) if config is not None else regs[0] / "config.yaml"
    criteria = load_config(TrainConfig, cfg_path, list(overrides)).criteria
    out = Path(out_dir) if out_dir is not None else regs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = _criteria(pairs, criteria)
    overall = verdict([x["decision"] for x in results])
    base, reg = pairs[0]
    status = run_status(
        toy=any(run["metrics"].get("toy") for pair in pairs for run in pair),
        random_init=not all(run["metrics"].get("backbone_pretrained") for pair in pairs for run in pair),
    )
    pair_names = f"{base['dir'].name} vs {reg['dir'].name}"
    seeds = f"{len(pairs)} seed(s)"
    figures = {
        "criteria": _plot_criteria(results, overall, subtitle(None, status, f"{seeds}, {pair_names}"), out / "criteria.png"),
        "curves": _plot_curves(base, reg, subtitle(None, status, f"first seed: {pair_names}"), out / "curves.png"),
        "bias_maps": _plot_bias_maps(base, reg, subtitle(None, status, f"first seed: {pair_names}"), out / "bias_maps.png"),
        "examples": _plot_examples(base, reg, "mit1003_val", subtitle(None, status, f"MIT1003 val split, first seed: {pair_names}"), out / "examples.png"),
        "ood_examples": _plot_examples(base, reg, "cat2000", subtitle(None, status, f"CAT2000 (out of domain), first seed: {pair_names}"), out / "examples_cat2000.png"),
        "ood_categories": _plot_categories(base, reg, subtitle(None, status, f"first seed: {pair_names}"), out / "ood_categories.png"),
    }
    figures = {k: str(v.name) for k, v in figures.items() if v is not None}
    per_seed = _per_seed_rows(pairs, criteria)
    with open(out / "per_seed.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(per_seed[0]))
        w.writeheader()
        w.writerows(per_seed)
    runs = []
    for b, r in pairs:
        for label, run in (("baseline", b), ("entropy_reg", r)):
            m = run["metrics"]
            runs.append(
                {
                    "role": label,
                    "toy": bool(m.get("toy")),
                    "seed": _seed_of(run),
                    "run_dir": str(run["dir"]),
                    "checkpoint": m.get("checkpoint"),
                    "entropy_weight": m.get("entropy_weight"),
                    "entropy_dose": m.get("entropy_dose"),
                    "weights": m.get("weights"),
                    "weights_description": m.get("weights_description"),
                    "backbone_pretrained": m.get("backbone_pretrained"),
                    "aspect": m.get("aspect"),
                    "aspect_description": m.get("aspect_description"),
                    "bias_map": m["bias_map"],
                    "datasets": m["datasets"],
                    "stability": stability(run["history"], run["finished"], criteria.max_val_nll_rise),
                }
            )
    aggregates = {
        key: seed_spread([row[key] for row in per_seed])
        for key in per_seed[0]
        if key not in ("seed", "baseline_run", "entropy_run", "reg_stable") and all(isinstance(row.get(key), float) for row in per_seed)
    }
    report = {
        "package": "saliency-entropy",
        "version": __version__,
        "verdict": overall,
        "seeds": [row["seed"] for row in per_seed],
        "criteria": results,
        "thresholds": {k: getattr(criteria, k) for k in criteria.__dataclass_fields__},
        "thresholds_source": str(cfg_path),
        "random_init": not all(r["backbone_pretrained"] for r in runs),
        "toy": any(r["toy"] for r in runs),
        "data_mismatches_allowed": data_notes,
        "aggregates": aggregates,
        "per_seed": per_seed,
        "runs": runs,
        "figures": figures,
    }
    if reference is not None:
        report["reference"] = reference_row(Path(reference), runs)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(_markdown(report))
    return report


def reference_row(run_dir: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference run's IG per data set and bias-map entropy, with the regularized runs' bias entropy
    read against it (mean over seeds; percent of the reference's). The reference must be evaluated at the
    same bias-map image size, since the entropy depends on the number of pixels."""
    metrics_path = run_dir / EVAL_DIR / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path} does not exist; run `saliency-entropy evaluate {run_dir}` first")
    m = json.loads(metrics_path.read_text())
    size = m["bias_map"]["image_size"]
    if size != runs[0]["bias_map"]["image_size"]:
        raise DataError(
            f"reference {run_dir}: bias map at {size}, the runs' at {runs[0]['bias_map']['image_size']}: entropies over "
            "different pixel grids do not compare (evaluate both with the same data.image_size)"
        )
    config_path = run_dir / "config.yaml"
    model = (yaml.safe_load(config_path.read_text()) or {}).get("model", {}) if config_path.is_file() else {}
    h_ref = m["bias_map"]["entropy_nats"]
    by_role = {role: [r["bias_map"]["entropy_nats"] for r in runs if r["role"] == role] for role in ("baseline", "entropy_reg")}
    mean = {role: float(np.mean(v)) for role, v in by_role.items()}
    manifest = load_manifest(run_dir, missing_ok=True) or {}
    return {
        "run_dir": str(run_dir),
        "weights_description": m.get("weights_description"),
        "architecture": model.get("architecture", "variant"),
        "components": model.get("components", 1),
        "scanpath": bool(model.get("scanpath")),
        "history_note": "bias map and IG with a history of one central fixation (x = W/2, y = H/2)" if model.get("scanpath") else "",
        "note": manifest.get("note", ""),
        "ig_bits": {name: d["ig"] for name, d in m["datasets"].items()},
        # scanpath models: each fixation given its own history (evaluate's conditional_ig)
        "conditional_ig_bits": {name: d["conditional_ig"] for name, d in m["datasets"].items() if "conditional_ig" in d},
        "bias_entropy_nats": h_ref,
        "bias_entropy_bits": h_ref / math.log(2),
        "baseline_bias_entropy_nats": mean["baseline"],
        "entropy_reg_bias_entropy_nats": mean["entropy_reg"],
        "entropy_reg_vs_reference_pct": 100 * (mean["entropy_reg"] - h_ref) / h_ref,
        "baseline_vs_reference_pct": 100 * (mean["baseline"] - h_ref) / h_ref,
    }


def _reference_markdown(ref: dict[str, Any]) -> list[str]:
    kind = f"{ref['architecture']}, {ref['components']} component(s){', scanpath' if ref['scanpath'] else ''}"
    lines = [
        "## Reference model",
        "",
        f"`{ref['run_dir']}` ({kind}; {ref['weights_description']}).",
        "",
        "| quantity | reference | baseline (mean over seeds) | entropy_reg (mean over seeds) |",
        "| --- | --- | --- | --- |",
        f"| bias-map entropy (nats) | {_fmt(ref['bias_entropy_nats'])} | {_fmt(ref['baseline_bias_entropy_nats'])} "
        f"({_fmt(ref['baseline_vs_reference_pct'], 2)} % vs reference) | {_fmt(ref['entropy_reg_bias_entropy_nats'])} "
        f"({_fmt(ref['entropy_reg_vs_reference_pct'], 2)} % vs reference) |",
    ]
    for name, ig in ref["ig_bits"].items():
        lines.append(f"| {name} IG (bits/fixation) | {_fmt(ig)} | | |")
    for name, ig in ref.get("conditional_ig_bits", {}).items():
        lines.append(f"| {name} conditional IG, each fixation given its history (bits/fixation) | {_fmt(ig)} | | |")
    lines.append("")
    lines += [f"> {note}" for note in (ref["history_note"], ref["note"]) if note]
    return [*lines, ""]


def _markdown(r: dict[str, Any]) -> str:
    first = r["runs"][0]
    counts = {d: sum(c["decision"] == d for c in r["criteria"]) for d in ("PASS", "FAIL", "INCONCLUSIVE")}
    lines = [
        "# Bias-map entropy regularization: go/no-go report",
        "",
        f"**Verdict: {r['verdict']}** ({counts['PASS']} pass, {counts['FAIL']} fail, {counts['INCONCLUSIVE']} inconclusive "
        f"of {len(r['criteria'])} criteria; {len(r['seeds'])} seed(s): {', '.join(map(str, r['seeds']))}; thresholds from `{r['thresholds_source']}`)",
        "",
    ]
    if r["toy"]:
        lines += [
            "> **TOY settings** (toy: true in the runs' config, e.g. the demo's: tiny images, few epochs, synthetic "
            "data): this report checks the pipeline; its verdict is not an answer to the research question.",
            "",
        ]
    if r["random_init"]:
        lines += [
            "> **RANDOM INIT: the backbone weights were randomly initialized** (pretrained: false), so the frozen "
            "features are noise: these numbers test the pipeline, not the research question.",
            "",
        ]
    if r["data_mismatches_allowed"]:
        lines += ["> **The runs' data differ** (allowed by --allow-data-mismatch): " + "; ".join(r["data_mismatches_allowed"]), ""]
    lines += [
        f"Backbone weights: {first['weights_description']}. Images: {first['aspect_description']}.",
        "",
        "## Criteria",
        "",
        "| criterion | estimate | interval | rule | decision | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["criteria"]:
        interval = f"[{_fmt(c['low'])}, {_fmt(c['high'])}] ({c['uncertainty']})" if c["low"] is not None else "n/a"
        note = c.get("ceiling_note", "")
        lines.append(f"| {c['name']} | {_fmt(c['measured'])} {c['unit']} | {interval} | {c['rule']} | {c['decision']} | {note} |")
    lines += [
        "",
        "A decision is PASS when the whole interval lies on the passing side of the threshold, FAIL when it lies on the failing "
        "side, INCONCLUSIVE when it straddles the threshold. Information-gain intervals are paired bootstraps over images "
        "(both runs of every seed on the same resampled images); entropy and stability intervals are the range over seeds.",
        "",
        "## Per seed",
        "",
    ]
    keys = list(r["per_seed"][0])
    lines += ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    for row in r["per_seed"]:
        lines.append("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
    lines += ["", "## Mean +- sd over seeds", "", "| quantity | mean +- sd | min | max |", "| --- | --- | --- | --- |"]
    for key, a in r["aggregates"].items():
        lines.append(f"| {key} | {_fmt(a['mean'])} +- {_fmt(a['sd'])} | {_fmt(a['min'])} | {_fmt(a['max'])} |")
    lines += [
        "",
        "## Runs",
        "",
        "| role | seed | run | entropy weight | dose (lambda x regularized fraction) | weights | images |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in r["runs"]:
        dose = run.get("entropy_dose") or {}
        measured = (
            f"{_fmt(dose.get('dose'))} ({dose.get('regularized_steps')}/{dose.get('steps')} steps)" if "dose" in dose else "n/a"
        )
        lines.append(
            f"| {run['role']} | {run['seed']} | `{run['run_dir']}` | {_fmt(run['entropy_weight'], 3)} | {measured} | "
            f"{run['weights_description']} | {run['aspect']} |"
        )
    if r.get("reference"):
        lines += ["", *_reference_markdown(r["reference"])]
    lines += ["", "## Figures", ""]
    for name, file in r["figures"].items():
        lines += [f"### {name}", "", f"![{name}]({file})", ""]
    return "\n".join(lines) + "\n"
