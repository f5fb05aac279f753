"""Training throughput per backbone and data-loading throughput of the augmentation pipeline.

    python packages/image-rating/benchmarks/throughput.py --out throughput.json [--device auto]

* Training: images/s of a full step (forward, MSE, backward, AdamW) of ``RatingModel`` (random init) on
  random tensors at each backbone's own input size (its weights' pretrained config: 224 px, 288 px
  for efficientnet_b3.ra2_in1k; ``--image-size`` for one size for all), per backbone. On CUDA: batch 32 (halved until it fits), bf16 autocast and
  channels_last as in training, 5 warm-up and 20 timed steps (median). On CPU (to stay within about
  3 minutes on 2 cores): batch 2, 1 warm-up and 2 timed steps, fp32.
* Data loading: images/s of one loader process with one thread (decode + the training augmentation,
  and decode + the evaluation pipeline, with the baseline weights' preprocessing: resize 235 bicubic,
  crop 224) on synthetic 1280x960 JPEG photos, with and without reduced-size JPEG decoding.
  ``workers_to_feed`` = training images/s / loading images/s per worker: the DataLoader workers one
  training process needs so that the GPU does not wait.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from image_rating.config import AugmentConfig, DataConfig, ModelConfig
from image_rating.data import RatingImageDataset
from image_rating.models import BACKBONES, build_model
from image_rating.synthetic import render_image
from image_rating.transforms import build_eval_transform, build_train_transform, resolve_preprocessing
from perception_shared.benchmarking import device_name
from perception_shared.pretrained import preprocessing_for


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_step_s(backbone: str, device: torch.device, batch: int, warmup: int, steps: int, size: int) -> float:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model, _ = build_model(ModelConfig(backbone=backbone, pretrained=False), 14, image_size=size)
    model.to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, 14, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and torch.cuda.is_bf16_supported())
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        with autocast:
            loss = F.mse_loss(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_throughput(backbone: str, device: torch.device, batch: int, warmup: int, steps: int, size: int) -> dict:
    """Images/s of full training steps; on CUDA the batch is halved until it fits in memory."""
    while True:
        try:
            step = _median_step_s(backbone, device, batch, warmup, steps, size)
            return {"batch_size": batch, "step_s": step, "images_per_s": batch / step, "timed_steps": steps}
        except torch.OutOfMemoryError:
            if device.type != "cuda" or batch == 1:
                raise
        torch.cuda.empty_cache()  # outside the except block: the failed attempt's tensors are gone by now
        batch //= 2


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` 1280x960 JPEGs (quality 90) made from procedural images, as stand-ins for photographs."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = Image.fromarray(render_image(rng, 480)).resize((1280, 960), Image.BILINEAR)
        paths.append(folder / f"photo_{i:03d}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def loading_throughput(paths: list[Path], transform, decode_min_size: int | None, repeats: int) -> float:
    """Images/s of ``dataset[i]`` in one process with one torch thread (what one DataLoader worker does)."""
    ds = RatingImageDataset(paths, np.zeros((len(paths), 14)), transform, decode_min_size=decode_min_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # DataLoader workers run with one thread
    try:
        ds[0]
        t0 = time.perf_counter()
        for _ in range(repeats):
            for i in range(len(ds)):
                ds[i]
        return repeats * len(ds) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--batch-size", type=int, help="default: 32 on CUDA, 2 on CPU")
    parser.add_argument("--steps", type=int, help="timed steps (default: 20 on CUDA, 2 on CPU)")
    parser.add_argument("--image-size", type=int, help="default: each backbone's own input size")
    parser.add_argument("--photos", type=int, default=32, help="JPEGs for the loading benchmark")
    args = parser.parse_args()

    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    cuda = device.type == "cuda"
    batch = args.batch_size or (32 if cuda else 2)
    steps = args.steps or (20 if cuda else 2)
    warmup = 5 if cuda else 1
    if cuda:
        torch.backends.cudnn.benchmark = True
    result: dict = {
        "benchmark": "image-rating throughput",
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu_threads": torch.get_num_threads(),
        "image_size": args.image_size or "each backbone's own input size",
        "precision": "bf16 autocast" if cuda and torch.cuda.is_bf16_supported() else "fp32",
        "training": {},
    }
    for name in args.backbones:
        size = args.image_size or preprocessing_for(name)["input_size"][-1]
        r = train_throughput(name, device, batch, warmup, steps, size)
        r["image_size"] = size
        result["training"][name] = r
        print(
            f"{name:44s} {size} px, batch {r['batch_size']:3d}: {r['images_per_s']:8.1f} images/s "
            f"({r['step_s']:.3f} s/step)",
            flush=True,
        )
    reference = BACKBONES[0]  # the baseline's resnet50.a1_in1k
    if reference in result["training"]:
        ref = result["training"][reference]["images_per_s"]
        for r in result["training"].values():
            r["relative_to_resnet50"] = r["images_per_s"] / ref

    pre, _ = resolve_preprocessing(ModelConfig(backbone=reference), DataConfig(image_size=args.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp), args.photos)
        train_tf, eval_tf = build_train_transform(pre, AugmentConfig()), build_eval_transform(pre)
        torch.manual_seed(0)
        load = {
            "source": f"{args.photos} synthetic 1280x960 JPEG photos (quality 90)",
            "preprocessing": pre.to_dict(),
            "train_augment_images_per_s": loading_throughput(photos, train_tf, pre.resize_size, 3),
            "train_augment_full_decode_images_per_s": loading_throughput(photos, train_tf, None, 3),
            "eval_images_per_s": loading_throughput(photos, eval_tf, pre.resize_size, 3),
        }
    load["reduced_jpeg_decode_speedup"] = (
        load["train_augment_images_per_s"] / load["train_augment_full_decode_images_per_s"]
    )
    result["data_loading_per_worker"] = load
    result["workers_to_feed"] = {
        n: r["images_per_s"] / load["train_augment_images_per_s"] for n, r in result["training"].items()
    }
    print(
        f"loading, one worker: train augmentation {load['train_augment_images_per_s']:.0f} images/s "
        f"({load['reduced_jpeg_decode_speedup']:.2f}x from reduced JPEG decoding), eval {load['eval_images_per_s']:.0f} images/s"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {result['device']}; wrote {args.out}")


if __name__ == "__main__":
    main()
