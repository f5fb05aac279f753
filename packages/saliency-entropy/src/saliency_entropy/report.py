"""Go/no-go report: does the bias-map entropy regularizer help out of domain without hurting in domain?

Reads two evaluated runs (``<run>/evaluation/`` from ``evaluate``, ``<run>/training_history.csv``) and
writes ``report.md``, ``report.json`` and figures (``curves.png``, ``bias_maps.png``,
``examples.png``, ``ood_categories.png``). Criteria (thresholds from the ``criteria`` section of a
config; by default the entropy run's own ``config.yaml``), each measured and marked pass/fail:

1. bias-map entropy rises: ``100 (H_reg - H_base) / H_base >= min_entropy_increase_pct``;
2. in-domain IG (MIT1003 val, bits/fixation) falls by at most ``max_in_domain_ig_drop_pct`` percent of
   the baseline's (``100 (IG_base - IG_reg) / |IG_base|``);
3. out-of-domain IG (CAT2000) improves: ``IG_reg - IG_base > min_ood_ig_gain_bits``;
4. the regularized training is stable: it finished (``final_model.pth``), every logged loss is finite,
   and validation NLL never rose more than ``max_val_nll_rise`` nats/fixation above its best so far.

The verdict is GO when all four pass, NO-GO otherwise.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from perception_shared.config import load_config
from perception_shared.errors import DataError
from perception_shared.jsonio import write_json
from perception_shared.plotting import plt

from . import __version__
from .config import CriteriaConfig, TrainConfig

EVAL_DIR = "evaluation"


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
    examples = {}
    if (ev / "examples.npz").is_file():
        with np.load(ev / "examples.npz", allow_pickle=False) as z:
            examples = {k: z[k] for k in z.files}
    return {
        "dir": run,
        "metrics": json.loads(metrics_path.read_text()),
        "history": history,
        "bias": np.load(ev / "bias_map.npy", allow_pickle=False),
        "examples": examples,
        "finished": (run / "final_model.pth").is_file(),
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


def _criteria(base: dict[str, Any], reg: dict[str, Any], c: CriteriaConfig) -> list[dict[str, Any]]:
    hb, hr = base["metrics"]["bias_map"]["entropy_nats"], reg["metrics"]["bias_map"]["entropy_nats"]
    out = []
    inc = 100.0 * (hr - hb) / hb
    out.append(
        {
            "name": "bias entropy up",
            "measured": inc,
            "unit": "%",
            "rule": f">= {c.min_entropy_increase_pct}",
            "passed": inc >= c.min_entropy_increase_pct,
        }
    )
    mb = base["metrics"]["datasets"].get("mit1003_val")
    mr = reg["metrics"]["datasets"].get("mit1003_val")
    if mb and mr:
        drop = 100.0 * (mb["ig"] - mr["ig"]) / abs(mb["ig"]) if mb["ig"] != 0 else math.inf
        out.append(
            {
                "name": "in-domain IG drop",
                "measured": drop,
                "unit": "% of baseline",
                "rule": f"<= {c.max_in_domain_ig_drop_pct}",
                "passed": drop <= c.max_in_domain_ig_drop_pct,
            }
        )
    else:
        out.append(
            {
                "name": "in-domain IG drop",
                "measured": None,
                "unit": "",
                "rule": "needs mit1003_val in both evaluations",
                "passed": False,
            }
        )
    ob = base["metrics"]["datasets"].get("cat2000")
    orr = reg["metrics"]["datasets"].get("cat2000")
    if ob and orr:
        gain = orr["ig"] - ob["ig"]
        out.append(
            {
                "name": "OOD IG gain",
                "measured": gain,
                "unit": "bits/fixation",
                "rule": f"> {c.min_ood_ig_gain_bits}",
                "passed": gain > c.min_ood_ig_gain_bits,
            }
        )
    else:
        out.append(
            {
                "name": "OOD IG gain",
                "measured": None,
                "unit": "",
                "rule": "needs cat2000 in both evaluations",
                "passed": False,
            }
        )
    st = stability(reg["history"], reg["finished"], c.max_val_nll_rise)
    out.append(
        {
            "name": "training stable",
            "measured": st["max_val_nll_rise"],
            "unit": "nats/fixation max val NLL rise",
            "rule": f"finished, finite, rise <= {c.max_val_nll_rise}",
            "passed": st["stable"],
        }
    )
    return out


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["epoch"], r[key]) for r in history if isinstance(r.get(key), float) and isinstance(r.get("epoch"), float)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plot_curves(base: dict[str, Any], reg: dict[str, Any], path: Path) -> Path:
    panels = [
        ("nll", "NLL (nats/fixation)"),
        ("ig", "IG over center prior (bits/fixation)"),
        ("bias_entropy", "bias-map entropy (nats)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (key, title) in zip(axes, panels):
        for run, label, color in ((base, "baseline", "tab:blue"), (reg, "entropy-reg", "tab:orange")):
            for split, style in (("train", "--"), ("val", "-")):
                x, y = _series(run["history"], f"{split}/{key}")
                if x:
                    ax.plot(x, y, style, color=color, marker="o", ms=3, label=f"{label} {split}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_bias_maps(base: dict[str, Any], reg: dict[str, Any], path: Path) -> Path:
    pb, pr = np.exp(base["bias"]), np.exp(reg["bias"])
    vmax = max(pb.max(), pr.max())
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, p, run, label in ((axes[0], pb, base, "baseline"), (axes[1], pr, reg, "entropy-reg")):
        info = run["metrics"]["bias_map"]
        im = ax.imshow(p, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(
            f"{label}: H = {info['entropy_nats']:.4f} nats ({info['entropy_fraction_of_max']:.2%} of max)", fontsize=9
        )
        ax.axis("off")
    fig.colorbar(im, ax=axes, fraction=0.03, label="probability per saliency-grid cell")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_examples(base: dict[str, Any], reg: dict[str, Any], dataset: str, path: Path) -> Path | None:
    eb, er = base["examples"], reg["examples"]
    key = f"{dataset}_index"
    if key not in eb or key not in er or not np.array_equal(eb[key], er[key]) or len(eb[key]) == 0:
        return None
    k = len(eb[key])
    fig, axes = plt.subplots(k, 3, figsize=(10, 2.6 * k), squeeze=False)
    for j in range(k):
        img, fix = eb[f"{dataset}_image_{j}"], eb[f"{dataset}_fixations_{j}"]
        axes[j, 0].imshow(img)
        axes[j, 0].scatter(fix[:, 0] - 0.5, fix[:, 1] - 0.5, s=5, c="cyan", edgecolors="k", linewidths=0.3)
        for col, run, label in ((1, eb, "baseline"), (2, er, "entropy-reg")):
            axes[j, col].imshow(
                np.exp(run[f"{dataset}_log_density_{j}"]), cmap="magma", extent=(0, img.shape[1], img.shape[0], 0)
            )
            axes[j, col].set_title(label, fontsize=8)
        axes[j, 0].set_title(f"{dataset} image {int(eb[key][j])}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_categories(base: dict[str, Any], reg: dict[str, Any], path: Path) -> Path | None:
    cb = base["metrics"]["datasets"].get("cat2000", {}).get("per_category")
    cr = reg["metrics"]["datasets"].get("cat2000", {}).get("per_category")
    if not cb or not cr:
        return None
    cats = sorted(set(cb) & set(cr))
    x = np.arange(len(cats))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(cats) + 2), 3.5))
    ax.bar(x - 0.2, [cb[c]["ig"] for c in cats], 0.4, label="baseline")
    ax.bar(x + 0.2, [cr[c]["ig"] for c in cats], 0.4, label="entropy-reg")
    ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("IG (bits/fixation)")
    ax.set_title("CAT2000 information gain per category")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def make_report(
    baseline_run: str | Path,
    entropy_run: str | Path,
    *,
    out_dir: str | Path | None = None,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the report (see the module docstring) and return its JSON content."""
    base, reg = _load_run(Path(baseline_run)), _load_run(Path(entropy_run))
    cfg_path = Path(config) if config is not None else Path(entropy_run) / "config.yaml"
    criteria = load_config(TrainConfig, cfg_path, list(overrides)).criteria
    out = Path(out_dir) if out_dir is not None else Path(entropy_run) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = _criteria(base, reg, criteria)
    verdict = "GO" if all(r["passed"] for r in results) else "NO-GO"
    figures = {
        "curves": _plot_curves(base, reg, out / "curves.png"),
        "bias_maps": _plot_bias_maps(base, reg, out / "bias_maps.png"),
        "examples": _plot_examples(base, reg, "mit1003_val", out / "examples.png"),
        "ood_examples": _plot_examples(base, reg, "cat2000", out / "examples_cat2000.png"),
        "ood_categories": _plot_categories(base, reg, out / "ood_categories.png"),
    }
    figures = {k: str(v.name) for k, v in figures.items() if v is not None}
    runs = {}
    for label, run in (("baseline", base), ("entropy_reg", reg)):
        m = run["metrics"]
        runs[label] = {
            "run_dir": str(run["dir"]),
            "checkpoint": m.get("checkpoint"),
            "entropy_weight": m.get("entropy_weight"),
            "backbone": m.get("backbone"),
            "backbone_pretrained": m.get("backbone_pretrained"),
            "bias_map": m["bias_map"],
            "datasets": m["datasets"],
            "stability": stability(run["history"], run["finished"], criteria.max_val_nll_rise),
        }
    report = {
        "package": "saliency-entropy",
        "version": __version__,
        "verdict": verdict,
        "criteria": results,
        "thresholds": {k: getattr(criteria, k) for k in criteria.__dataclass_fields__},
        "thresholds_source": str(cfg_path),
        "runs": runs,
        "figures": figures,
    }
    write_json(out / "report.json", report)
    (out / "report.md").write_text(_markdown(report))
    return report


def _markdown(r: dict[str, Any]) -> str:
    b, e = r["runs"]["baseline"], r["runs"]["entropy_reg"]
    lines = [
        "# Bias-map entropy regularization: go/no-go report",
        "",
        f"**Verdict: {r['verdict']}** ({sum(c['passed'] for c in r['criteria'])} of {len(r['criteria'])} criteria pass; thresholds from `{r['thresholds_source']}`)",
        "",
    ]
    if not (b["backbone_pretrained"] and e["backbone_pretrained"]):
        lines += [
            "> **Backbone weights were randomly initialized** (no weights file): these numbers test the pipeline, not the research question.",
            "",
        ]
    lines += ["## Criteria", "", "| criterion | measured | rule | result |", "| --- | --- | --- | --- |"]
    for c in r["criteria"]:
        lines.append(
            f"| {c['name']} | {_fmt(c['measured'])} {c['unit']} | {c['rule']} | {'PASS' if c['passed'] else 'FAIL'} |"
        )
    lines += [
        "",
        "## Results",
        "",
        "Information gain (IG) over the center prior and log-likelihood (LL) over uniform are in bits/fixation; entropies in nats, and in bits where the row says so.",
        "",
    ]
    lines += ["| metric | baseline | entropy-reg |", "| --- | --- | --- |"]
    lines.append(f"| entropy weight (lambda) | {_fmt(b['entropy_weight'], 3)} | {_fmt(e['entropy_weight'], 3)} |")
    for key, label in (
        ("entropy_nats", "bias-map entropy (nats)"),
        ("entropy_bits", "bias-map entropy (bits)"),
        ("entropy_fraction_of_max", "entropy / max log(H*W)"),
    ):
        lines.append(f"| {label} | {_fmt(b['bias_map'][key])} | {_fmt(e['bias_map'][key])} |")
    lines.append(
        f"| max entropy log(H*W) (nats) | {_fmt(b['bias_map']['max_entropy_nats'])} | {_fmt(e['bias_map']['max_entropy_nats'])} |"
    )
    for ds, title in (("mit1003_val", "MIT1003 val"), ("cat2000", "CAT2000")):
        if ds not in b["datasets"] or ds not in e["datasets"]:
            continue
        db, de = b["datasets"][ds], e["datasets"][ds]
        for key in ("ig", "ig_per_image", "ll", "nss", "auc_judd", "nll_nats", "gt_ig", "n_samples", "n_fixations"):
            if key in db and key in de:
                lines.append(f"| {title} {key} | {_fmt(db[key])} | {_fmt(de[key])} |")
    cat_b = b["datasets"].get("cat2000", {}).get("per_category", {})
    cat_e = e["datasets"].get("cat2000", {}).get("per_category", {})
    if cat_b and cat_e:
        lines += [
            "",
            "### CAT2000 IG per category (bits/fixation)",
            "",
            "| category | images | baseline | entropy-reg |",
            "| --- | --- | --- | --- |",
        ]
        for c in sorted(set(cat_b) & set(cat_e)):
            lines.append(f"| {c} | {cat_b[c]['n_samples']} | {_fmt(cat_b[c]['ig'])} | {_fmt(cat_e[c]['ig'])} |")
    lines += [
        "",
        "## Training stability",
        "",
        "| run | finished | finite losses | max val NLL rise (nats) | epochs |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, run in (("baseline", b), ("entropy-reg", e)):
        s = run["stability"]
        lines.append(
            f"| {label} | {s['finished']} | {s['finite_losses']} | {_fmt(s['max_val_nll_rise'])} | {s['epochs']} |"
        )
    lines += ["", "## Figures", ""]
    for name, file in r["figures"].items():
        lines += [f"### {name}", "", f"![{name}]({file})", ""]
    lines += ["## Runs", ""]
    for label, run in (("baseline", b), ("entropy-reg", e)):
        lines.append(
            f"- {label}: `{run['run_dir']}` (checkpoint `{run['checkpoint']}`, backbone {run['backbone']}, pretrained: {run['backbone_pretrained']})"
        )
    return "\n".join(lines) + "\n"
