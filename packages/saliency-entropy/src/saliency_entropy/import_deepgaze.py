"""``import-deepgaze``: a ``deepgaze_pytorch`` state dict (the published ``deepgaze3.pth``) as a run of this package.

The file is read with ``torch.load(weights_only=True)``. Its keys are those ``deepgaze_pytorch`` defines:

* ``DeepGazeIIIMixture`` (the published model): ``saliency_networks.{k}.*``, ``scanpath_networks.{k}.*``,
  ``fixation_selection_networks.{k}.*``, ``finalizers.{k}.gauss.sigma`` and ``.center_bias_weight``;
* ``DeepGazeIII`` (one model, e.g. the spatial first stage of the training notebook, ``scanpath_network=None``):
  ``saliency_network.*``, ``scanpath_network.*`` (scanpath models only), ``fixation_selection_network.*``,
  ``finalizer.*``;
* the backbone: ``features.features.1.*`` (torchvision's DenseNet-201 behind DeepGaze's normalizer).

The architecture (number of components, scanpath networks or not, history length) follows from the keys;
``downsample``, ``readout_factor`` and ``saliency_map_factor`` are not in the file and are options with
the published model's values as defaults (2, 4, 4). Keys that do not fit, or that are missing, are one
``CheckpointError`` listing them.

The run directory holds what ``train`` writes and ``evaluate``, ``report``, ``predict``, ``export`` and
``train --init-from`` read: ``final_model.pth`` (config, weights, the MIT1003 split and the weights record
with the file's sha256), ``config.yaml``, ``manifest.json``, ``split.json`` and ``center_prior.json``. The
center prior (the IG baseline and, as for trained runs, the model's center bias) is fitted on the MIT1003
training split of the config exactly as ``train`` fits it, so an imported run's information gain is
measured against the same baseline as this package's runs. The published model was trained on all of
MIT1003 (its 10 components are the 10 cross-validation folds of DeepGaze III's training), so its MIT1003
numbers are not held out; the manifest and the evaluation say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import FINAL, atomic_save, load_checkpoint
from perception_shared.config import config_to_dict, save_config
from perception_shared.distributed import init_distributed
from perception_shared.errors import CheckpointError
from perception_shared.manifest import start_manifest
from perception_shared.runs import prepare_run_dir

from .config import TrainConfig
from .data import save_split, training_data_paths
from .registry import build_model
from .train import (
    CENTER_PRIOR_FILE,
    SPLIT_FILE,
    load_train_config,
    new_dose_counts,
    prepare_training_data,
    write_center_prior,
)

BACKBONE = "torchvision:DenseNet201_Weights.IMAGENET1K_V1"
LAYERS = [
    "features.denseblock4.denselayer32.norm1",
    "features.denseblock4.denselayer32.conv1",
    "features.denseblock4.denselayer31.conv2",
]
FEATURES_PREFIX = "features.features.1."
SINGLE = {
    "saliency_network": "saliency_networks",
    "scanpath_network": "scanpath_networks",
    "fixation_selection_network": "fixation_selection_networks",
    "finalizer": "finalizers",
}
NOT_HELD_OUT = (
    "the published DeepGaze III was trained on all MIT1003 images (10 cross-validation folds, one per "
    "mixture component): its MIT1003 numbers are in-sample, not held out"
)


def sha256_of(path: str | Path) -> str:
    """The sha256 of the whole file (the manifest's ``file_hash`` samples large files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_deepgaze_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``deepgaze_pytorch`` state dict file (``weights_only=True``)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a deepgaze_pytorch state dict (a mapping of parameter names to tensors)")
    return state


def architecture_of(state: dict[str, torch.Tensor], path: str | Path) -> dict[str, Any]:
    """``components``, ``scanpath`` and ``history`` from the keys of a ``deepgaze_pytorch`` state dict."""
    mixture = {int(m.group(1)) for k in state if (m := re.match(r"saliency_networks\.(\d+)\.", k))}
    single = any(k.startswith("saliency_network.") for k in state)
    if not mixture and not single:
        raise CheckpointError(
            f"{path}: no saliency network (keys 'saliency_networks.<k>.*' or 'saliency_network.*'); "
            f"first keys: {sorted(state)[:5]}"
        )
    scanpath = any(k.startswith(("scanpath_networks.", "scanpath_network.")) for k in state)
    positions = {int(m.group(1)) for k in state if (m := re.search(r"encoding0\.convolutions\.(\d+)\.weight$", k))}
    return {
        "components": max(mixture) + 1 if mixture else 1,
        "scanpath": scanpath,
        "history": max(positions) + 1 if positions else 4,
    }


def _our_key(key: str) -> str:
    if key.startswith(FEATURES_PREFIX):
        return "backbone.net." + key[len(FEATURES_PREFIX) :]
    head, _, rest = key.partition(".")
    if head in SINGLE:
        key = f"{SINGLE[head]}.0.{rest}"
    return re.sub(r"^(finalizers\.\d+\.)gauss\.sigma$", r"\1sigma", key)


def convert_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """Our state dict from a ``deepgaze_pytorch`` one; every key must fit and every weight be present."""
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unexpected, wrong_shape = [], []
    for key, value in state.items():
        name = _our_key(key)
        if name.startswith("backbone.net.") and model.backbone.is_pruned(name[len("backbone.net.") :]):
            continue  # DenseNet-201 past the last layer DeepGaze III reads: never computed, not kept
        if name not in ours:
            unexpected.append(key)
            continue
        value = value.reshape(ours[name].shape) if value.numel() == ours[name].numel() else value
        if value.shape != ours[name].shape:
            wrong_shape.append(f"{key} {tuple(value.shape)} (expected {tuple(ours[name].shape)})")
            continue
        converted[name] = value.to(ours[name].dtype)
    # the center prior is fitted here, not read; BatchNorm's batch counters are not used in eval mode
    missing = [k for k in ours if k not in converted and k != "center_prior" and not k.endswith("num_batches_tracked")]
    if unexpected or missing or wrong_shape:
        raise CheckpointError(
            f"{path} does not fit DeepGaze III as its keys describe it: "
            + "; ".join(
                f"{what}: {items[:20]}{' ...' if len(items) > 20 else ''} ({len(items)})"
                for what, items in (("unexpected keys", unexpected), ("missing keys", missing), ("wrong shapes", wrong_shape))
                if items
            )
        )
    for k, v in ours.items():
        converted.setdefault(k, v)
    return converted


def import_deepgaze(
    file: str | Path,
    out: str | Path,
    *,
    config: str | Path = "baseline",
    overrides: list[str] | tuple[str, ...] = (),
    data: str | None = None,
    cat2000: str | None = None,
    downsample: float = 2.0,
    readout_factor: int = 4,
    saliency_map_factor: int = 4,
    skip_bad: bool = False,
    argv: list[str] | None = None,
) -> Path:
    """Write the run directory ``out`` for the ``deepgaze_pytorch`` state dict ``file`` (module docstring).

    ``config``/``overrides``/``data``/``cat2000``: the data settings (MIT1003 root, split, image size,
    center prior) as for ``train``; the model section is DeepGaze III's.
    """
    state = read_deepgaze_state_dict(file)
    arch = architecture_of(state, file)
    cfg: TrainConfig = load_train_config(config, overrides, data=data, cat2000=cat2000)
    cfg.model = dataclasses.replace(  # replace runs the config's checks
        cfg.model,
        architecture="deepgaze3",
        backbone=BACKBONE,
        layers=list(LAYERS),
        pretrained=True,
        weights_file=None,
        downsample=float(downsample),
        readout_factor=readout_factor,
        saliency_map_factor=saliency_map_factor,
        **arch,
    )
    cfg.entropy.weight = 0.0
    model = build_model(cfg.model, cfg.entropy, pretrained=False)
    model.load_state_dict(convert_state_dict(state, model, file))
    run_dir = prepare_run_dir(Path(out).parent, out)
    ctx = init_distributed("cpu")
    _, _, split, prior = prepare_training_data(cfg, run_dir, BadInputPolicy(skip=skip_bad))
    model.set_center_prior(prior.density)
    sha = sha256_of(file)
    weights = {"identifier": f"deepgaze_pytorch:{Path(file).name}", "kind": "deepgaze_pytorch state dict",
               "path": str(Path(file).resolve()), "sha256": sha, "pretrained": True}
    manifest = start_manifest(
        run_dir, config=cfg, argv=argv, data_paths=training_data_paths(cfg), weights=[weights], ctx=ctx,
        extra={"imported_from": {"file": str(Path(file).resolve()), "sha256": sha, **arch}, "note": NOT_HELD_OUT},
    )
    save_split(split, run_dir / SPLIT_FILE)
    write_center_prior(prior, run_dir / CENTER_PRIOR_FILE)
    save_config(cfg, run_dir / "config.yaml")
    atomic_save(
        {
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "epoch": 0,
            "extra": {"split": split, "weights": weights, "dose": new_dose_counts(), "imported": True},
        },
        run_dir / FINAL,
    )
    manifest.finish("completed", 0)
    return run_dir
