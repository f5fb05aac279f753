"""Our DeepGaze III against the real ``deepgaze_pytorch``, on the same weights, image, center bias and history.

Needs a checkout of https://github.com/matthias-k/DeepGaze (never part of this repository), named by the
environment variable ``DEEPGAZE_REF_PATH``. Nothing is downloaded: ``deepgaze_pytorch`` builds its DenseNet-201
through ``torch.hub.load``, which this script answers with torchvision's randomly initialized DenseNet-201; every
parameter of the reference is then drawn at random (seeded) and the same state dict is imported into ours
(``import_deepgaze.convert_state_dict``, the path ``import-deepgaze`` takes).

Models: the 10-component scanpath mixture (``deepgaze_pytorch.DeepGazeIII``, the published architecture) and the
spatial model of DeepGaze III's first training stage (``modules.DeepGazeIII`` without scanpath network), each on
a 768 x 1024 image (pixel values 0-255) with a Gaussian center bias and, for the mixture, a history of four
fixations. Prints and writes (``--out``) the max |difference| of the log-densities (float32).

    DEEPGAZE_REF_PATH=/tmp/deepgaze_ref python packages/saliency-entropy/benchmarks/deepgaze_reference_check.py --out check.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision

from saliency_entropy.config import EntropyConfig, ModelConfig
from saliency_entropy.import_deepgaze import BACKBONE, LAYERS, convert_state_dict
from saliency_entropy.registry import build_model

H, W = 768, 1024


def reference_modules(path: Path) -> dict[str, types.ModuleType]:
    """``deepgaze_pytorch``'s modules without its package ``__init__`` (which imports every model and its
    optional dependencies); ``torch.hub.load`` answers with a random torchvision DenseNet-201."""
    package = types.ModuleType("deepgaze_pytorch")
    package.__path__ = [str(path / "deepgaze_pytorch")]
    sys.modules["deepgaze_pytorch"] = package
    torch.hub.load = lambda *args, **kwargs: torchvision.models.densenet201(weights=None)
    return {name: importlib.import_module(f"deepgaze_pytorch.{name}") for name in ("layers", "modules", "deepgaze3")}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn at random around its scale, so that no stage is an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("features."):
                continue  # the backbone keeps its random initialization
            if name.endswith("gauss.sigma"):
                p.copy_(torch.rand((), generator=g) * 6 + 3)
            elif name.endswith("center_bias_weight"):
                p.copy_(torch.rand(1, generator=g) * 0.5 + 0.75)
            elif "layernorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif "encoding0" in name and name.endswith("weight"):
                p.copy_(0.01 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5 * (0.3 if p.dim() == 1 else 1.0))


def spatial_reference(ref: dict[str, types.ModuleType]) -> torch.nn.Module:
    """The first stage of DeepGaze III's training notebook: one model, no scanpath network, downsample 2."""
    layers, modules, dg3 = ref["layers"], ref["modules"], ref["deepgaze3"]
    features = modules.FeatureExtractor(dg3.RGBDenseNet201(), ["1." + name for name in LAYERS])
    selection = torch.nn.Sequential(
        OrderedDict(
            [
                ("layernorm0", layers.LayerNormMultiInput([1, 0])),
                ("conv0", layers.Conv2dMultiInput([1, 0], 128, (1, 1), bias=False)),
                ("bias0", layers.Bias(128)),
                ("softplus0", torch.nn.Softplus()),
                ("layernorm1", layers.LayerNorm(128)),
                ("conv1", torch.nn.Conv2d(128, 16, (1, 1), bias=False)),
                ("bias1", layers.Bias(16)),
                ("softplus1", torch.nn.Softplus()),
                ("conv2", torch.nn.Conv2d(16, 1, (1, 1), bias=False)),
            ]
        )
    )
    return modules.DeepGazeIII(
        features=features,
        saliency_network=dg3.build_saliency_network(2048),
        scanpath_network=None,
        fixation_selection_network=selection,
        downsample=2,
        readout_factor=4,
        saliency_map_factor=4,
        included_fixations=[],
    )


def ours(components: int, scanpath: bool, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    cfg = ModelConfig(
        architecture="deepgaze3", backbone=BACKBONE, layers=list(LAYERS), pretrained=False,
        components=components, scanpath=scanpath,
    )
    model = build_model(cfg, EntropyConfig(), pretrained=False)
    model.load_state_dict(convert_state_dict(state, model, "deepgaze_pytorch state dict"))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    path = os.environ.get("DEEPGAZE_REF_PATH")
    if not path or not (Path(path) / "deepgaze_pytorch" / "modules.py").is_file():
        sys.exit("set DEEPGAZE_REF_PATH to a checkout of github.com/matthias-k/DeepGaze (holding deepgaze_pytorch/)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = reference_modules(Path(path))
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, H, W, generator=g) * 255
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    cb = -(((xs - W / 2) / 300) ** 2 + ((ys - H / 2) / 250) ** 2) / 2
    cb = (cb - cb.flatten().logsumexp(0)).float()[None]
    # README convention: previous fixations, the most recent last; the model reads [-1, -2, -3, -4]
    x_seq, y_seq = torch.tensor([512.0, 300.0, 500.0, 200.0, 200.0, 700.0]), torch.tensor([384.0, 300.0, 100.0, 300.0, 100.0, 500.0])
    order = [-1, -2, -3, -4]
    x_hist, y_hist = x_seq[order][None], y_seq[order][None]
    results = []
    for label, build_ref, components, scanpath in (
        ("spatial (first stage)", lambda: spatial_reference(ref), 1, False),
        ("published scanpath mixture (10 components)", lambda: ref["deepgaze3"].DeepGazeIII(pretrained=False), 10, True),
    ):
        reference = build_ref()
        reference.eval()  # deepgaze_pytorch's train() returns None, so eval() cannot be chained
        randomize(reference, seed=components)
        state = reference.state_dict()
        mine = ours(components, scanpath, state)
        with torch.no_grad():
            t0 = time.perf_counter()
            expected = reference(image.clone(), cb, x_hist, y_hist) if scanpath else reference(image.clone(), cb)
            if expected.dim() == 4:  # the mixture keeps a channel axis, the single model does not
                expected = expected[:, 0]
            t1 = time.perf_counter()
            got = mine.log_density(image, cb, torch.stack([x_hist, y_hist], dim=-1) if scanpath else None)
            t2 = time.perf_counter()
        diff = float((got - expected).abs().max())
        results.append(
            {
                "model": label,
                "max_abs_diff": diff,
                "log_density_range": [float(expected.min()), float(expected.max())],
                "reference_seconds": round(t1 - t0, 2),
                "ours_seconds": round(t2 - t1, 2),
                "keys": len(state),
            }
        )
        print(f"{label}: max |ours - deepgaze_pytorch| = {diff:.3g} (log-densities {results[-1]['log_density_range']})")
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, {args.threads} thread(s)".strip(),
        "torch": torch.__version__,
        "deepgaze_ref_path": path,
        "image": [H, W],
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
