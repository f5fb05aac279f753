"""Evaluation of a trained run: MIT1003 val (in-domain) and CAT2000 (out-of-domain), plus the bias map.

For every image: the model's log-density on the image grid (``data.image_size``, CAT2000
``data.ood_image_size``; with ``data.aspect: keep`` each image at its own aspect ratio with that size's
longer side), the center prior of the run (fitted on its MIT1003 training fixations, rescaled to each
image's grid) as the baseline, and the metrics of ``saliency_entropy.metrics``. Aggregates per data set (and per CAT2000
category): information gain (bits/fixation) over the center prior, log-likelihood over uniform
(bits/fixation), NLL (nats/fixation), each averaged over fixations (``*``) and over images
(``*_per_image``: mean of each image's per-fixation mean); NSS and AUC-Judd as means over images.
With synthetic ground truth, ``gt_ig`` is the information gain of the true density on the same
fixations (the best achievable, up to sampling noise) and ``ig_fraction_of_gt`` the model's share.

Scanpath models (DeepGaze III with scanpath networks) on MIT1003 (raw source, which keeps the scanpaths):
``conditional_ig`` is the information gain over the center prior of each fixation's density *given its
history* (the up to ``model.history`` fixations before it in its subject's scanpath, the initial central
one included), in bits/fixation, over the same fixations as ``ig`` (every fixation after the initial
one); ``conditional_ll`` and ``conditional_nll_nats`` likewise. Next to it, ``ig`` is the same model's
spatial information gain: its density with one central fixation as the only history (what DeepGaze III
predicts before the first saccade), for every fixation alike.

Outputs in ``<run>/evaluation/`` (or ``--out``): ``metrics.json`` (``n_samples`` = images evaluated,
``n_fixations``, over all data sets and ranks, each counted once; the backbone weights, the aspect mode
and the run's entropy dose), ``per_image.csv`` (what ``report`` bootstraps), ``manifest.json`` (the data
evaluated, with content hashes), ``bias_map.npy`` (saliency-grid log-probabilities), ``bias_map.png``,
``examples_<dataset>.png`` and ``examples.npz`` (images, fixations and predictions of the first
``eval.examples`` images, for ``report``). When the checkpoint lies in a run directory (one with a
``manifest.json``), the figures also go to that run's TensorBoard and, with ``tracking.wandb`` on in its
config, its W&B run (continued), at the checkpoint's step, as ``evaluate/bias_map`` and
``evaluate/examples_<dataset>``.

Evaluating on other MIT1003 files than the run was trained with (``--data``) is refused, naming the
difference, unless ``allow_data_mismatch``: the validation split is only held out on the same data.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import load_checkpoint, restore_model, uses_pretrained
from perception_shared.cli import resolve_run
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, all_gather_object, barrier, gather_by_index, main_then_broadcast
from perception_shared.errors import CheckpointError, DataError
from perception_shared.figures import plt, save_figure, set_header, subtitle
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger, progress
from perception_shared.manifest import MANIFEST, check_same_data, load_manifest, start_manifest
from perception_shared.samplers import make_eval_loader
from perception_shared.tracking import log_images

from . import __version__, metrics
from .config import TrainConfig
from .data import (
    FixationDataset,
    ImageRecord,
    ScanpathDataset,
    cat2000_names,
    cat2000_records,
    collate,
    ground_truth_log_density,
    select_ood,
    training_data_paths,
)
from .figures import per_cell, show_density, show_stimulus, status_of
from .models import DensityModel
from .registry import build_model
from .train import aspect_description, dose_summary, load_mit_records, model_log_likelihoods

log = get_logger("saliency_entropy.evaluate")
LOG2 = math.log(2.0)
# cond_ll_sum: log-likelihoods given each fixation's history (scanpath models; NaN otherwise)
COLUMNS = ["n_fixations", "ll_sum", "baseline_sum", "nss", "auc_judd", "gt_sum", "log_pixels", "cond_ll_sum"]


def load_run_model(checkpoint: Path, device: torch.device) -> tuple[DensityModel, TrainConfig, dict[str, Any]]:
    """The model of a checkpoint, rebuilt from the config saved in it, in eval mode on ``device``.

    The checkpoint holds what training changed; a frozen random-init backbone comes from the run's
    ``frozen/`` file, a frozen pretrained one from the weights cache (built only then, its sha256 checked
    against the checkpoint's); ``weights_record`` says what it was trained with.
    """
    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {checkpoint} has no 'config' or 'model' entry")
    cfg = config_from_dict(TrainConfig, state["config"], source=f"the config in {checkpoint}")
    model = build_model(cfg.model, cfg.entropy, pretrained=uses_pretrained(state))
    restore_model(model, state, checkpoint)
    return model.to(device).eval(), cfg, state


def weights_record(state: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """Identifier, source, path and sha256 of the backbone weights a checkpoint was trained from."""
    record = (state.get("extra") or {}).get("weights")
    if isinstance(record, dict):
        return record
    # checkpoints from before weights records: the config says whether weights were asked for
    return {"identifier": cfg.model.backbone, "kind": "unknown", "path": None, "sha256": None, "pretrained": cfg.model.pretrained}


def describe_weights(record: dict[str, Any]) -> str:
    """One line: RANDOM INIT loudly, else identifier, source and sha256."""
    if not record.get("pretrained"):
        return f"{record.get('identifier')}: RANDOM INIT (pretrained: false), not ImageNet features"
    return f"{record.get('identifier')} from {record.get('kind')} {record.get('path')} (sha256 {record.get('sha256')})"


@torch.no_grad()
def evaluate_records(
    model: DensityModel,
    records: list[ImageRecord],
    size: tuple[int, int],
    ctx: DistContext,
    *,
    batch_size: int,
    num_workers: int,
    auc_jitter: bool,
    n_examples: int,
    desc: str,
    aspect: str = "squash",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-image sums and metrics (rows in dataset order, ``COLUMNS``) gathered over ranks, and examples.

    ``aspect``: ``squash`` (every image at ``size``) or ``keep`` (its own aspect ratio, ``size``'s longer side).
    """
    factor = model.cfg.saliency_map_factor
    conditional = model.cfg.scanpath and all(r.scanpaths is not None for r in records)
    if conditional:
        dataset: FixationDataset = ScanpathDataset(records, size, model.cfg.history, aspect, factor)
    else:
        dataset = FixationDataset(records, size, aspect, factor)
    loader = make_eval_loader(dataset, batch_size, num_workers=num_workers, collate_fn=collate)
    baselines: dict[tuple[int, int], torch.Tensor] = {}
    indices, rows = [], []
    ex_images, ex_fix, ex_logp, ex_index = [], [], [], []
    for batch in progress(loader, desc=desc, leave=False):
        images = batch["image"]
        images = images.to(ctx.device) if isinstance(images, torch.Tensor) else [x.to(ctx.device) for x in images]
        logp, _ = model(images)
        if conditional:
            cond = model_log_likelihoods(model, images, {**batch, "fixations": batch["fixations"].to(ctx.device)}, factor)[0]
            cond = (cond.double().cpu() * batch["mask"]).sum(dim=1).tolist()
        for b in range(len(batch["index"])):
            index = int(batch["index"][b])
            hw = dataset.image_size(index)
            if hw not in baselines:
                baselines[hw] = model.center_log_density(hw).double().cpu()
            full = model.full_resolution(logp[b]).double().cpu()
            fix = batch["fixations"][b][batch["mask"][b]].numpy()
            ll = metrics.log_likelihoods(full, fix)
            base = metrics.log_likelihoods(baselines[hw], fix)
            gt_map = ground_truth_log_density(records[index], hw)
            gt = metrics.log_likelihoods(gt_map, fix).sum() if gt_map is not None else float("nan")
            nss = metrics.nss(full, fix)
            auc = metrics.auc_judd(full, fix, jitter=auc_jitter, seed=index)
            indices.append(index)
            cond_sum = cond[b] if conditional else float("nan")
            rows.append([len(fix), ll.sum(), base.sum(), nss, auc, gt, math.log(hw[0] * hw[1]), cond_sum])
            if index < n_examples:
                image = images[b].cpu()
                ex_index.append(index)
                ex_images.append((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
                ex_logp.append(logp[b].float().cpu().numpy())
                ex_fix.append(fix)
    local = np.asarray(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
    _, table = gather_by_index(torch.tensor(indices, dtype=torch.long), local)
    if len(table) != len(records):
        raise RuntimeError(f"evaluation gathered {len(table)} images, expected {len(records)}")
    parts = all_gather_object([(i, img, lp, fx) for i, img, lp, fx in zip(ex_index, ex_images, ex_logp, ex_fix)])
    chosen = sorted((item for part in parts for item in part), key=lambda item: item[0])
    examples = {
        "index": np.array([c[0] for c in chosen], dtype=np.int64),
        "images": [c[1] for c in chosen],
        "log_density": [c[2] for c in chosen],
        "fixations": [c[3] for c in chosen],
    }
    return table, examples


def summarize(table: np.ndarray) -> dict[str, float]:
    """Aggregates of per-image rows (see the module docstring)."""
    n, ll, base, nss, auc, gt, log_pixels, cond = (table[:, i] for i in range(len(COLUMNS)))
    total = n.sum()
    out = {
        "n_samples": int(len(table)),
        "n_fixations": int(total),
        "ig": float((ll.sum() - base.sum()) / total / LOG2),
        "ig_per_image": float(np.mean((ll - base) / n) / LOG2),
        "ll": float((ll.sum() + (n * log_pixels).sum()) / total / LOG2),
        "ll_per_image": float(np.mean(ll / n + log_pixels) / LOG2),
        "nll_nats": float(-ll.sum() / total),
        "nll_nats_per_image": float(np.mean(-ll / n)),
        "nss": float(np.nanmean(nss)),
        "auc_judd": float(np.nanmean(auc)),
    }
    if np.isfinite(cond).all():
        out["conditional_ig"] = float((cond.sum() - base.sum()) / total / LOG2)
        out["conditional_ig_per_image"] = float(np.mean((cond - base) / n) / LOG2)
        out["conditional_ll"] = float((cond.sum() + (n * log_pixels).sum()) / total / LOG2)
        out["conditional_nll_nats"] = float(-cond.sum() / total)
    if np.isfinite(gt).all():
        out["gt_ig"] = float((gt.sum() - base.sum()) / total / LOG2)
        out["gt_ig_per_image"] = float(np.mean((gt - base) / n) / LOG2)
        out["ig_fraction_of_gt"] = out["ig"] / out["gt_ig"] if out["gt_ig"] > 0 else float("nan")
    return out


DATASET_NAMES = {"mit1003_val": "MIT1003 val split (in domain)", "cat2000": "CAT2000 (out of domain)"}


def _plot_examples(examples: dict[str, Any], dataset: str, sub: str, factor: int, path: Path) -> Path:
    """Each example image with its fixations above the model's density on its saliency grid."""
    k = max(len(examples["index"]), 1)
    fig, axes = plt.subplots(2, k, figsize=(3.4 * k + 0.6, 5.6), squeeze=False, layout="constrained")
    for j in range(len(examples["index"])):
        img, fix, lp = examples["images"][j], examples["fixations"][j], examples["log_density"][j]
        show_stimulus(axes[0, j], img, f"image {int(examples['index'][j])}: {len(fix)} fixations", fix)
        show_density(fig, axes[1, j], lp, "predicted density", per_cell(factor), extent=(0, img.shape[1], img.shape[0], 0))
    for ax in axes.flat[2 * len(examples["index"]):]:
        ax.axis("off")
    set_header(fig, f"{DATASET_NAMES.get(dataset, dataset)}: predicted fixation density", sub)
    return save_figure(fig, path)


def _plot_bias(bias: np.ndarray, info: dict[str, Any], sub: str, factor: int, path: Path) -> Path:
    """The bias map (the model's density for images without content) and its entropy in bits."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    title = (
        f"entropy {info['entropy_bits']:.3f} bits ({info['entropy_fraction_of_max']:.2%} of the uniform map's "
        f"{info['max_entropy_bits']:.3f} bits)"
    )
    show_density(fig, ax, bias, title, per_cell(factor))
    set_header(fig, "bias map: the model's fixation density on images without content", sub)
    return save_figure(fig, path)


def bias_map_summary(model: DensityModel, cfg: TrainConfig) -> tuple[np.ndarray, dict[str, Any]]:
    size = (cfg.data.image_size[0], cfg.data.image_size[1])
    with torch.no_grad():
        bias = model.bias_log_density(size)
        entropy = float(model.entropy_full_resolution(bias))
    max_entropy = math.log(size[0] * size[1])
    return bias.float().cpu().numpy(), {
        "entropy_nats": entropy,
        "entropy_bits": entropy / LOG2,
        "max_entropy_nats": max_entropy,
        "max_entropy_bits": max_entropy / LOG2,
        "entropy_fraction_of_max": entropy / max_entropy,
        "image_size": list(size),
        "n_samples": cfg.entropy.n_samples,
        "intensities": list(cfg.entropy.intensities),
        "noise_std": cfg.entropy.noise_std,
    }


def evaluation_data_paths(cfg: TrainConfig, datasets: list[str]) -> dict[str, Path]:
    """The files an evaluation reads: the training data's MIT1003 entries (same names as in the run's
    manifest, so the two can be compared) and CAT2000's stimuli and fixation maps."""
    paths: dict[str, Path] = dict(training_data_paths(cfg)) if "mit1003_val" in datasets else {}
    if "cat2000" in datasets:
        paths["cat2000_stimuli"] = Path(cfg.data.cat2000_root) / "Stimuli"
        paths["cat2000_fixations"] = Path(cfg.data.cat2000_root) / "FIXATIONLOCS"
    return paths


def _check_training_data(run_dir: Path, evaluation: dict[str, Any], cfg: TrainConfig, allow: bool) -> None:
    """Refuse (unless ``allow``) MIT1003 files other than those the run's manifest records."""
    run_manifest = load_manifest(run_dir, missing_ok=True)
    if run_manifest is None:
        log.warning("%s has no manifest.json: cannot check that MIT1003 val is the run's own held-out data", run_dir)
        return
    trained = dict(run_manifest.get("data") or {})
    evaluated = {k: v for k, v in evaluation["data"].items() if k in trained}
    problems = check_same_data(
        {f"run {run_dir}": {"data": trained}, f"evaluation data {cfg.data.mit_root}": {"data": evaluated}},
        allow=allow,
    )
    for problem in problems:
        log.warning("evaluating on other data than the run was trained on: %s", problem)


def evaluate_run(
    run: str | Path,
    ctx: DistContext,
    *,
    out_dir: str | Path | None = None,
    mit_root: str | None = None,
    cat2000_root: str | None = None,
    skip_bad: bool = False,
    datasets: list[str] | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    allow_data_mismatch: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a run and write the outputs listed above.

    ``run``: a run directory (its best_model.pth, else final_model.pth, else last.pth) or a checkpoint
    file. ``datasets``: a subset of ``mit1003_val``, ``cat2000``; default: those the run's ``eval`` config
    enables. ``mit_root``/``cat2000_root`` replace the run's data roots; other MIT1003 files than the
    run's manifest records are refused unless ``allow_data_mismatch``.
    """
    ref = resolve_run(run)
    ckpt = ref.checkpoint
    model, cfg, state = load_run_model(ckpt, ctx.device)
    if mit_root:
        cfg.data.mit_root = mit_root
    if cat2000_root:
        cfg.data.cat2000_root = cat2000_root
    out = Path(out_dir) if out_dir is not None else ref.run_dir / "evaluation"
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    split = (state.get("extra") or {}).get("split")
    if not isinstance(split, dict) or "val" not in split:
        raise CheckpointError(f"checkpoint {ckpt} carries no image split (extra.split)")
    policy = BadInputPolicy(skip=skip_bad)
    summaries: dict[str, dict[str, Any]] = {}
    per_image: list[dict[str, Any]] = []
    all_examples: dict[str, dict[str, Any]] = {}
    if datasets is None:
        datasets = [name for name, on in (("mit1003_val", cfg.eval.mit_val), ("cat2000", cfg.eval.cat2000)) if on]
    unknown = sorted(set(datasets) - {"mit1003_val", "cat2000"})
    if unknown:
        raise DataError(f"unknown data set(s) {unknown}; choose from mit1003_val, cat2000")
    weights = weights_record(state, cfg)
    manifest = start_manifest(
        out,
        config=cfg,
        argv=argv,
        data_paths=evaluation_data_paths(cfg, datasets),
        weights=[weights],
        ctx=ctx,
        enabled=ctx.is_main,
        extra={"run": str(ref.run_dir), "checkpoint": str(ckpt)},
    )
    if "mit1003_val" in datasets:
        main_then_broadcast(lambda: _check_training_data(ref.run_dir, manifest.data, cfg, allow_data_mismatch))
    jobs = []
    if "mit1003_val" in datasets:
        jobs.append(("mit1003_val", lambda: load_mit_records(cfg, policy, names=split["val"]), cfg.data.image_size))
    if "cat2000" in datasets:

        def cat_records() -> list[ImageRecord]:
            chosen = select_ood(cat2000_names(cfg.data.cat2000_root), cfg.data.ood_images, cfg.data.ood_seed)
            return cat2000_records(cfg.data.cat2000_root, key=cfg.data.cat2000_key, policy=policy, names=chosen)

        jobs.append(("cat2000", cat_records, cfg.data.ood_image_size))
    if not jobs:
        raise DataError("no data set to evaluate (eval.mit_val and eval.cat2000 are false, or --datasets is empty)")
    for name, load, image_size in jobs:
        records = main_then_broadcast(load)
        size = (image_size[0], image_size[1])
        table, examples = evaluate_records(
            model,
            records,
            size,
            ctx,
            batch_size=batch_size or cfg.data.eval_batch_size,
            num_workers=cfg.data.num_workers if num_workers is None else num_workers,
            auc_jitter=cfg.eval.auc_jitter,
            n_examples=cfg.eval.examples,
            desc=name,
            aspect=cfg.data.aspect,
        )
        summary = summarize(table)
        summary["image_size"] = list(size)
        summary["aspect"] = cfg.data.aspect
        cats = [r.category for r in records]
        if any(c is not None for c in cats):
            summary["per_category"] = {
                c: summarize(table[[i for i, rc in enumerate(cats) if rc == c]]) for c in sorted(set(cats))
            }
        summaries[name] = summary
        all_examples[name] = examples
        for r, row in zip(records, table):
            n = row[0]
            per_image.append(
                {
                    "dataset": name,
                    "image": r.name,
                    "category": r.category or "",
                    "n_fixations": int(n),
                    "ig_bits": (row[1] - row[2]) / n / LOG2,
                    "ll_bits": (row[1] / n + row[6]) / LOG2,
                    "nll_nats": -row[1] / n,
                    "nss": row[3],
                    "auc_judd": row[4],
                    "gt_ig_bits": (row[5] - row[2]) / n / LOG2,
                    "conditional_ig_bits": (row[7] - row[2]) / n / LOG2,
                }
            )
        log.info("%s: %s", name, ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if isinstance(v, float)))
    bias, bias_info = bias_map_summary(model, cfg)
    result = {
        "package": "saliency-entropy",
        "version": __version__,
        "checkpoint": str(ckpt),
        "epoch": state.get("epoch"),
        "toy": cfg.toy,
        "backbone": cfg.model.backbone,
        "backbone_pretrained": bool(weights.get("pretrained")),
        "weights": weights,
        "weights_description": describe_weights(weights),
        "aspect": cfg.data.aspect,
        "aspect_description": aspect_description(cfg),
        "entropy_weight": cfg.entropy.weight,
        "entropy_dose": dose_summary(
            cfg.entropy.weight, (state.get("extra") or {}).get("dose"), cfg.entropy.compute_every
        ),
        "n_samples": int(sum(d["n_samples"] for d in summaries.values())),
        "n_fixations": int(sum(d["n_fixations"] for d in summaries.values())),
        "datasets": summaries,
        "bias_map": bias_info,
        "center_prior_baseline": "KDE + uniform fitted on the run's MIT1003 training fixations",
    }
    if cfg.model.scanpath:
        result["scanpath_history"] = (
            "ig, the examples and the bias map: a history of one central fixation (x = W/2, y = H/2); "
            "conditional_ig (MIT1003, raw source): each fixation given its own history (its previous "
            f"{cfg.model.history} fixations, the initial central one included)"
        )
        if weights.get("initialized_from"):
            result["initialized_from"] = weights["initialized_from"]
    if policy.count:
        result["skipped_bad_inputs"] = policy.count
    if ctx.is_main:
        write_json(out / "metrics.json", result)
        with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(per_image[0]))
            w.writeheader()
            w.writerows(per_image)
        np.save(out / "bias_map.npy", bias)
        status, factor = status_of(cfg.toy, weights), cfg.model.saliency_map_factor
        run_name = ref.run_dir.name
        figures = {"evaluate/bias_map": _plot_bias(bias, bias_info, subtitle(run_name, status, f"backbone {weights.get('identifier')}"), factor, out / "bias_map.png")}
        arrays: dict[str, np.ndarray] = {}
        for name, ex in all_examples.items():
            sub = subtitle(run_name, status, f"first {len(ex['index'])} of {summaries[name]['n_samples']} images")
            figures[f"evaluate/examples_{name}"] = _plot_examples(ex, name, sub, factor, out / f"examples_{name}.png")
            arrays[f"{name}_index"] = ex["index"]
            for j, (img, lp, fix) in enumerate(zip(ex["images"], ex["log_density"], ex["fixations"])):
                arrays[f"{name}_image_{j}"] = img
                arrays[f"{name}_log_density_{j}"] = lp
                arrays[f"{name}_fixations_{j}"] = np.asarray(fix, dtype=np.float64)
        np.savez_compressed(out / "examples.npz", **arrays)
        if (ref.run_dir / MANIFEST).is_file():  # a run directory (not a checkpoint file on its own): its TensorBoard and W&B run
            log_images(ref.run_dir, figures, int(state.get("global_step", 0)), wandb=cfg.tracking.wandb, package="saliency-entropy")
    manifest.finish("completed", 0)
    barrier()
    return result
