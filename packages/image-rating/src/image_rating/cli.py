"""``image-rating``: train, evaluate, predict, verify-setup, make-synthetic, demo."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from perception_shared.cli import add_common_train_args, add_config_args, resolve_resume, run_cli
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed, is_main_process
from perception_shared.errors import UserError
from perception_shared.logging import setup_logging

from . import __version__
from .config import RatingConfig

PACKAGE = "image_rating"


def _load(args: argparse.Namespace, config: str | Path | None = None) -> RatingConfig:
    overrides = list(args.overrides)
    if getattr(args, "data", None):
        overrides.append(f"data.root={args.data}")
    return load_config(RatingConfig, resolve_config_path(PACKAGE, config or args.config), overrides)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-rating",
        description="Predict the mean slider rating of 14 perceptual dimensions per image with timm backbones.",
    )
    parser.add_argument("--version", action="version", version=f"image-rating {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model; writes a run directory",
        description="Train a rating model. Without --config: the run's own config.yaml when resuming, else baseline.",
    )
    add_common_train_args(p)
    p.add_argument("--data", metavar="DIR", help="data root holding images/ and the ratings CSV (sets data.root)")

    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint: metrics JSON/CSV/PNG with bootstrap CIs",
        description="Evaluate a run's best_model.pth (or --checkpoint) on its val split, its train split, "
        "or every row of a data set (--split all, e.g. a held-out test set given with --data).",
    )
    p.add_argument("run", nargs="?", metavar="RUN_DIR", help="run directory (uses its best_model.pth)")
    p.add_argument("--run-dir", dest="run_dir", help="same as RUN_DIR")
    p.add_argument("--checkpoint", help="a checkpoint file instead of the run's best_model.pth")
    p.add_argument("--split", default="val", choices=["val", "train", "all"], help="default: val")
    p.add_argument("--data", metavar="DIR", help="another data root (same CSV format) to evaluate on")
    p.add_argument("--out", help="output folder (default: <run dir>/evaluation_<split>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the r intervals (default: eval.n_boot)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad CSV rows / images with a counted warning")

    p = sub.add_parser(
        "predict",
        help="predict ratings for new images",
        description="Predict the mean rating of every dimension for images in folders, image files or .txt "
        "lists (one path per line, relative to the list). Writes a CSV in rating units and a summary CSV.",
    )
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, image file or .txt list")
    p.add_argument("--out", default="predictions.csv", help="output CSV (default: predictions.csv)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a counted warning")

    p = sub.add_parser(
        "verify-setup",
        help="check packages, GPU, data files, CSV columns, backbone and one batch",
        description="Check the Python packages, GPUs, data files, CSV columns and rows, build the backbone and "
        "run one training batch; prints a report and exits 1 if anything failed.",
    )
    add_config_args(p, default_config="baseline")
    p.add_argument("--data", metavar="DIR", help="data root (sets data.root)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad", action="store_true", help="count bad rows as a warning instead of a failure")

    p = sub.add_parser(
        "make-synthetic",
        help="write synthetic images + ratings CSV with known ground truth",
        description="Write OUT/images/*.png, OUT/per_image_Slider_mean_sd_from_wide.csv and the ground truth "
        "(OUT/synthetic_truth.json with the achievable r per dimension, OUT/synthetic_truth.csv).",
    )
    p.add_argument("out", metavar="OUT")
    p.add_argument("--n-images", type=int, default=160)
    p.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    p.add_argument("--raters", type=int, default=20, help="simulated raters per image (default 20)")
    p.add_argument("--noise-scale", type=float, default=1.0, help="multiplies every dimension's rater noise sd")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on tiny synthetic data (CPU, ~2 minutes)",
        description="make-synthetic -> train (configs/demo.yaml) -> evaluate -> predict; writes OUT/summary.json.",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    add_config_args(p, default_config="demo")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command != "train":  # train logs to its run directory too (set up once the directory exists)
        setup_logging()
    if args.command == "train":
        from .train import train

        spec = resolve_resume(args)
        config: str | Path = args.config or "baseline"
        if args.config is None and spec.resume and spec.run_dir and (spec.run_dir / "config.yaml").is_file():
            config = spec.run_dir / "config.yaml"  # continue with the run's own settings
        cfg = _load(args, config)
        ctx = init_distributed(args.device)
        train(
            cfg,
            output_dir=args.output_dir,
            run_dir=spec.run_dir,
            resume=spec.resume,
            resume_from=spec.checkpoint,
            skip_bad=args.skip_bad,
            ctx=ctx,
        )
        return 0
    if args.command == "evaluate":
        from .evaluate import evaluate_checkpoint

        target = args.checkpoint or args.run or args.run_dir
        if target is None:
            raise UserError("evaluate needs a run directory (RUN_DIR or --run-dir) or --checkpoint")
        metrics = evaluate_checkpoint(
            target,
            split=args.split,
            data_root=args.data,
            out_dir=args.out,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            n_boot=args.n_boot,
            skip_bad=args.skip_bad,
        )
        if is_main_process():
            m = metrics["mean_over_dimensions"]
            print(
                f"{metrics['n_samples']} images ({args.split}): mean r {m['pearson_r']:.3f}, MAE {m['mae']:.3f}, RMSE {m['rmse']:.3f}"
            )
        return 0
    if args.command == "predict":
        from .predict import predict_images, summary_frame

        df = predict_images(
            args.checkpoint,
            args.inputs,
            out_csv=args.out,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            skip_bad=args.skip_bad,
        )
        print(summary_frame(df, list(df.columns[1:])).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"{len(df)} image(s) -> {args.out}")
        return 0
    if args.command == "verify-setup":
        from .verify import format_report, verify_setup

        cfg = _load(args)
        checks = verify_setup(cfg, device=args.device, skip_bad=args.skip_bad)
        print(format_report(checks, f"image-rating {__version__} verify-setup (config {args.config})"))
        return 1 if any(c.status == "fail" for c in checks) else 0
    if args.command == "make-synthetic":
        from .synthetic import make_synthetic

        try:
            syn = make_synthetic(
                args.out,
                n_images=args.n_images,
                size=args.size,
                n_raters=args.raters,
                noise_scale=args.noise_scale,
                seed=args.seed,
            )
        except ValueError as e:
            raise UserError(str(e)) from None
        info = json.loads(syn.truth_json.read_text())
        print(f"{args.n_images} images ({args.size} px) and {syn.csv.name} in {Path(args.out)}")
        print(
            "achievable r per dimension: "
            + ", ".join(f"{d} {v['achievable_r']:.3f}" for d, v in info["dimensions"].items())
        )
        return 0
    if args.command == "demo":
        from .demo import format_summary, run_demo

        summary = run_demo(args.out, device=args.device, config=args.config, overrides=args.overrides)
        print(format_summary(summary, summary["outputs"]["comparison"]))
        return 0
    raise UserError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)
