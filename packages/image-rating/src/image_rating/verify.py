"""``verify-setup``: everything a long job needs, checked in a minute before it is submitted.

Packages, GPU, the preprocessing, where the backbone's weights would come from (without downloading),
the data (``validate-data``'s checks), the backbone built with those weights, and one training batch.
``validate-data`` stays the command for the data alone; this one adds the environment and the model.
Each check is OK, WARN (works, but worth knowing, e.g. no GPU) or FAIL; any FAIL makes the command exit
non-zero. Checks after a failed data check still run (the batch then uses random images), so one call
shows every problem.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from perception_shared.distributed import resolve_device
from perception_shared.errors import UserError
from perception_shared.pretrained import is_offline, locate_weights

from .config import RatingConfig
from .data import RatingImageDataset, list_images
from .models import build_model
from .report import describe_weights
from .transforms import Preprocessing, build_train_transform, resolve_preprocessing
from .validate import validate_data

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pandas",
    "scipy",
    "PIL",
    "matplotlib",
    "yaml",
    "tqdm",
    "tensorboard",
    "perception_shared",
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


def _packages() -> Check:
    found, missing = [], []
    for name in PACKAGES:
        try:
            mod = importlib.import_module(name)
            found.append(f"{name} {getattr(mod, '__version__', '?')}")
        except ImportError as e:
            missing.append(f"{name} ({e})")
    if missing:
        return Check("python packages", "fail", "missing: " + ", ".join(missing))
    return Check("python packages", "ok", ", ".join(found))


def _gpu(device: str) -> Check:
    if not torch.cuda.is_available():
        if device == "cuda":
            return Check("GPU", "fail", "--device cuda was requested but torch sees no CUDA device")
        return Check(
            "GPU", "warn", f"no CUDA device visible (torch {torch.__version__}); training runs on the CPU, slowly"
        )
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    bf16 = "bf16 supported" if torch.cuda.is_bf16_supported() else "no bf16 (use loop.precision fp16)"
    return Check("GPU", "ok", f"{len(names)} device(s): {', '.join(names)}; CUDA {torch.version.cuda}; {bf16}")


def _attempt(name: str, fn: Callable[[], tuple[str, Any]]) -> tuple[Check, Any]:
    """Run one check: ``fn`` returns ``(detail, value)``; a raised error becomes a FAIL with its message."""
    try:
        detail, value = fn()
        return Check(name, "ok", detail), value
    except (UserError, OSError, ValueError, RuntimeError) as e:
        return Check(name, "fail", str(e)), None


def verify_setup(cfg: RatingConfig, device: str = "auto", skip_bad: bool = False) -> list[Check]:
    """Run every check with ``cfg``; returns them in order (nothing raises for a failed check).

    The data check is ``validate-data``'s (``validate.validate_data``); with ``skip_bad`` its bad rows are
    a warning, as training would skip them.
    """
    data = cfg.data
    checks = [_packages(), _gpu(device)]

    def preprocessing() -> tuple[str, Preprocessing]:
        found, overrides = resolve_preprocessing(cfg.model, data)
        extra = f"; differs from the weights: {'; '.join(overrides)}" if overrides and cfg.model.pretrained else ""
        return (
            f"crop {found.image_size}, resize {found.resize_size} ({found.interpolation}), mean {list(found.mean)}, "
            f"std {list(found.std)} from the {found.source}{extra}",
            found,
        )

    check, pre = _attempt("preprocessing", preprocessing)
    weights = _weights(cfg)
    checks += [check, weights]

    report = validate_data(data)
    summary = (
        f"{report.csv}: {report.n_valid_rows} of {report.n_rows} rows valid, {len(report.dimensions)} dimensions; "
        f"{report.files} image(s) decoded"
    )
    if report.ok:
        checks.append(Check("data", "ok", summary))
    else:
        listed = "; ".join(report.problems[:5]) + (
            f" (+{len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
        )
        status = "warn" if skip_bad and report.n_valid_rows >= 2 else "fail"
        checks.append(
            Check("data", status, f"{summary}; {len(report.problems)} problem(s) (validate-data lists all): {listed}")
        )

    def device_check() -> tuple[str, torch.device]:
        dev = resolve_device(device)
        return f"training would run on {dev}", dev

    check, dev = _attempt("device", device_check)
    checks.append(check)
    n_dims = len(report.dimensions) or len(data.dimensions) or data.num_dimensions or 14
    image_size = pre.image_size if pre is not None else 224

    def backbone() -> tuple[str, torch.nn.Module]:
        t0 = time.perf_counter()
        loaded = weights.status == "ok" and cfg.model.pretrained  # found here, so nothing is downloaded
        model, source = build_model(cfg.model, n_dims, image_size=image_size, pretrained=loaded)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        took = time.perf_counter() - t0
        return f"{cfg.model.backbone}: {n:.1f}M parameters, {describe_weights(source)}, built in {took:.1f} s", model

    def one_batch() -> tuple[str, None]:
        b = min(data.batch_size, 4)
        files = list_images([data.images_path])[:b] if data.images_path.is_dir() and report.ok else []
        if files and pre is not None:
            ds = RatingImageDataset(files, None, build_train_transform(pre, cfg.augment), pre.resize_size)
            images = torch.stack([ds[i]["image"] for i in range(len(ds))])
            source = f"{len(ds)} real images"
        else:
            images = torch.randn(b, 3, image_size, image_size)
            source = f"{b} random images (the data checks failed)"
        net = model.to(dev).train()
        t0 = time.perf_counter()
        out = net(images.to(dev))
        loss = F.mse_loss(out.float(), torch.zeros_like(out, dtype=torch.float32))
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if tuple(out.shape) != (len(images), n_dims) or not torch.isfinite(loss):
            raise RuntimeError(f"output shape {tuple(out.shape)}, loss {float(loss)}")
        took = time.perf_counter() - t0
        return f"{source}, {tuple(images.shape)} -> {tuple(out.shape)} on {dev}, forward+backward {took:.2f} s", None

    check, model = _attempt("backbone", backbone)
    checks.append(check)
    if model is not None and dev is not None:
        checks.append(_attempt("one batch", one_batch)[0])
    return checks


def _weights(cfg: RatingConfig) -> Check:
    """Where the backbone's weights would come from now, without downloading."""
    if not cfg.model.pretrained:
        return Check("weights", "warn", f"{cfg.model.backbone}: RANDOM INIT (model.pretrained: false)")
    try:
        source = locate_weights(
            cfg.model.backbone, cfg.model.weights_file, allow_download=False, package="image-rating"
        )
    except UserError as e:
        if is_offline():
            return Check(
                "weights", "fail", str(e).splitlines()[0] + " (HF_HUB_OFFLINE is set; see `image-rating weights`)"
            )
        return Check("weights", "warn", f"{cfg.model.backbone}: not cached here; training would download it")
    return Check("weights", "ok", describe_weights(source))


def format_report(checks: list[Check], title: str) -> str:
    tags = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}
    width = max(len(c.name) for c in checks)
    lines = [title] + [f"{tags[c.status]} {c.name.ljust(width)}  {c.detail}" for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in tags}
    verdict = "setup OK" if not counts["fail"] else "setup has problems"
    lines.append(f"{verdict}: {counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    return "\n".join(lines)
