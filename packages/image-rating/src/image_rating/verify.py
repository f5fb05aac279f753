"""``verify-setup``: check packages, GPU, data files, CSV columns and rows, the backbone and one batch.

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

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import resolve_device
from perception_shared.errors import UserError

from .config import RatingConfig
from .data import (
    IMAGE_EXTENSIONS,
    RatingImageDataset,
    RatingsTable,
    find_dimensions,
    load_ratings,
    load_split,
    read_ratings_csv,
)
from .models import build_model
from .transforms import build_train_transform

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
    """Run every check with ``cfg``; returns them in order (nothing raises for a failed check)."""
    data = cfg.data
    checks = [_packages(), _gpu(device)]

    def csv_columns() -> tuple[str, None]:
        df = read_ratings_csv(data.csv_path)
        dims = data.dimensions or find_dimensions(list(df.columns), data.mean_column)
        if data.image_column not in df.columns:
            raise UserError(f"{data.csv_path}: no image column {data.image_column!r}; columns: {', '.join(df.columns)}")
        return f"{data.csv_path}: {len(df)} rows; {len(dims)} dimensions: {', '.join(dims)}", None

    def images_folder() -> tuple[str, None]:
        folder = data.images_path
        if not folder.is_dir():
            raise UserError(f"image folder {folder} does not exist")
        n = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        return f"{folder}: {n} image file(s)", None

    def rows() -> tuple[str, RatingsTable]:
        policy = BadInputPolicy(skip=skip_bad)
        table = load_ratings(data, policy)
        how = "found and decoded" if data.check_images == "decode" else "found (not decoded: data.check_images=exists)"
        skipped = f"; skipped {policy.count} bad row(s)" if policy.count else ""
        return f"{len(table)} valid rows, every listed image {how}{skipped}", table

    def split_file() -> tuple[str, None]:
        split = load_split(data.split_file)  # type: ignore[arg-type]
        return f"{data.split_file}: {len(split['train'])} train and {len(split['val'])} val images", None

    def device_check() -> tuple[str, torch.device]:
        dev = resolve_device(device)
        return f"training would run on {dev}", dev

    checks.append(_attempt("ratings CSV", csv_columns)[0])
    checks.append(_attempt("image folder", images_folder)[0])
    check, table = _attempt("rows and images", rows)
    checks.append(check)
    if data.split_file:
        checks.append(_attempt("split file", split_file)[0])
    check, dev = _attempt("device", device_check)
    checks.append(check)
    n_dims = len(table.dimensions) if table else len(data.dimensions) or data.num_dimensions or 14

    def backbone() -> tuple[str, torch.nn.Module]:
        t0 = time.perf_counter()
        model = build_model(
            cfg.model.backbone,
            n_dims,
            cfg.model.pretrained_path,
            hidden=cfg.model.hidden,
            dropout=cfg.model.dropout,
            image_size=data.image_size,
        )
        weights = cfg.model.pretrained_path or "random initialization (no model.pretrained_path)"
        n = sum(p.numel() for p in model.parameters()) / 1e6
        took = time.perf_counter() - t0
        return f"{cfg.model.backbone}: {n:.1f}M parameters, weights: {weights}, built in {took:.1f} s", model

    def one_batch() -> tuple[str, None]:
        b = min(data.batch_size, 4)
        if table is not None:
            ds = RatingImageDataset(table.paths[:b], None, build_train_transform(data, cfg.augment), data.resize_size)
            images = torch.stack([ds[i]["image"] for i in range(len(ds))])
            source = f"{len(ds)} real images"
        else:
            images = torch.randn(b, 3, data.image_size, data.image_size)
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


def format_report(checks: list[Check], title: str) -> str:
    tags = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}
    width = max(len(c.name) for c in checks)
    lines = [title] + [f"{tags[c.status]} {c.name.ljust(width)}  {c.detail}" for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in tags}
    verdict = "setup OK" if not counts["fail"] else "setup has problems"
    lines.append(f"{verdict}: {counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    return "\n".join(lines)
