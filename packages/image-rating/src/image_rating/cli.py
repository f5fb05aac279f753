"""``image-rating``: the common subcommands (``perception_shared.cli``) plus ``verify-setup``.

make-synthetic, validate-data, train, evaluate RUN, predict --run RUN, export RUN, weights, demo,
verify-setup. The CLI only parses arguments and calls the functions the tests call.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from perception_shared.cli import (
    add_config_args,
    add_demo_command,
    add_device_arg,
    add_evaluate_command,
    add_export_command,
    add_make_synthetic_command,
    add_predict_command,
    add_skip_bad_arg,
    add_train_command,
    add_validate_data_command,
    add_weights_command,
    check_option,
    resolve_resume,
    run_cli,
    writing_output,
)
from perception_shared.config import load_config, packaged_config_dir, resolve_config_path
from perception_shared.distributed import init_distributed, is_main_process
from perception_shared.errors import UserError
from perception_shared.logging import setup_logging

from . import __version__
from .config import RatingConfig

PACKAGE = "image_rating"
DATA_HELP = "data root holding images/ and the ratings CSV (sets data.root)"


def load_rating_config(
    config: str | Path,
    overrides: Sequence[str] = (),
    *,
    data: str | None = None,
    weights: str | None = None,
    seed: int | None = None,
) -> RatingConfig:
    """A config by name or path with ``--set`` overrides, ``--data`` (data.root), ``--weights``
    (model.weights_file) and ``--seed`` applied."""
    sets = list(overrides)
    if data:
        sets.append(f"data.root={data}")
    if weights:
        sets.append(f"model.weights_file={weights}")
    if seed is not None:
        sets.append(f"seed={seed}")
    return load_config(RatingConfig, resolve_config_path(PACKAGE, config), sets)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-rating",
        description="Predict the mean slider rating of 14 perceptual dimensions per image with timm backbones.",
    )
    parser.add_argument("--version", action="version", version=f"image-rating {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_make_synthetic_command(
        sub,
        description="Write OUT/images/*.png, OUT/per_image_Slider_mean_sd_from_wide.csv and the ground truth "
        "(OUT/synthetic_truth.json with the achievable r per dimension, OUT/synthetic_truth.csv).",
    )
    p.add_argument("--n-images", type=int, default=160, help="number of images, at least 4 (default 160)")
    p.add_argument("--size", type=int, default=96, help="image side in pixels, 16 to 4096 (default 96)")
    p.add_argument("--raters", type=int, default=20, help="simulated raters per image, at least 2 (default 20)")
    p.add_argument("--noise-scale", type=float, default=1.0, help="multiplies every dimension's rater noise sd (>= 0, default 1)")

    add_validate_data_command(
        sub,
        path_help=DATA_HELP,
        default_config="baseline",
        description="Read the ratings CSV and decode every image (listed or not) with the loaders' own checks; "
        "print a summary and every problem, exit 1 when there is one. --config/--set give the column names "
        "(data.mean_column, data.ratings_csv, ...).",
    )

    p = add_train_command(
        sub,
        data_help=DATA_HELP,
        description="Train a rating model. Without --config: the run's own config.yaml when resuming, else baseline.",
    )

    p = add_evaluate_command(
        sub,
        description="Evaluate a run (RUN: its directory, using best_model.pth, or a checkpoint file) on its held-out "
        "test split (default; the best epoch was chosen on val), its val or train split, or every row of a data set "
        "(--split all, e.g. a separate test set given with --data). A run from before 0.3 has no test split: it "
        "is evaluated on val with a warning.",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val", "train", "all"],
        help="default: test (held out from training and from choosing the best epoch)",
    )
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the r intervals (default: eval.n_boot)")

    p = add_predict_command(
        sub,
        inputs_help="folder (its images, not recursive), image file, or .txt list (one path per line, relative to the list)",
        description="Predict the mean rating of every dimension for new images of any size. Writes a CSV in "
        "rating units and a summary CSV beside it.",
        out_default="predictions.csv",
        out_help="output CSV",
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    add_skip_bad_arg(p)

    add_export_command(
        sub,
        description="Export a run's model to ONNX or TorchScript: input (batch, 3, H, W) normalized images, "
        "output (batch, D) ratings in the CSV's rating units, dynamic batch; the preprocessing (resize, crop, "
        "interpolation, mean/std from the weights' config) is written as JSON beside it.",
    )
    add_weights_command(sub)

    p = add_demo_command(
        sub,
        description="make-synthetic -> train (configs/demo.yaml) -> evaluate -> predict -> export; writes OUT/summary.json.",
    )

    p = sub.add_parser(
        "verify-setup",
        help="check packages, GPU, backbone weights, data, backbone and one batch before a long job",
        description="Check the Python packages, the GPU, where the backbone's weights would come from, the data "
        "(validate-data's checks), build the backbone and run one training batch; exits 1 if anything failed.",
    )
    add_config_args(p, default_config="baseline")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP)
    add_device_arg(p)
    add_skip_bad_arg(p)
    return parser


def _shipped_configs() -> dict[str, RatingConfig]:
    folder = packaged_config_dir(PACKAGE)
    return {p.stem: load_rating_config(p) for p in sorted(folder.glob("*.yaml"))}


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    command_line = None if argv is None else ["image-rating", *argv]  # None: the process's own, for the manifest
    if args.command != "train":  # train logs to its run directory too (set up once the directory exists)
        setup_logging()
    if args.command == "train":
        from .train import train

        spec = resolve_resume(args)
        config: str | Path = args.config or "baseline"
        if args.config is None and spec.resume and spec.run_dir and (spec.run_dir / "config.yaml").is_file():
            config = spec.run_dir / "config.yaml"  # continue with the run's own settings
        cfg = load_rating_config(config, args.overrides, data=args.data, weights=args.weights, seed=args.seed)
        ctx = init_distributed(args.device)
        train(
            cfg,
            output_dir=args.output_dir,
            run_dir=spec.run_dir,
            resume=spec.resume,
            resume_from=spec.checkpoint,
            skip_bad=args.skip_bad,
            ctx=ctx,
            argv=command_line,
        )
        return 0
    if args.command == "evaluate":
        from .evaluate import evaluate_run

        metrics = evaluate_run(
            args.run,
            split=args.split,
            data_root=args.data,
            out_dir=args.out,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            n_boot=args.n_boot,
            skip_bad=args.skip_bad,
            allow_data_mismatch=args.allow_data_mismatch,
        )
        if is_main_process():
            m = metrics["mean_over_dimensions"]
            print(
                f"{metrics['split_note']}: mean r {m['pearson_r']:.3f}, MAE {m['mae']:.3f}, "
                f"RMSE {m['rmse']:.3f}; backbone {metrics['weights']}; {metrics['settings']}"
            )
            for w in metrics["warnings"]:
                print(f"warning: {w}")
        return 0
    if args.command == "predict":
        from .predict import predict_images, summary_frame

        df = predict_images(
            args.run,
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
    if args.command == "export":
        from .export import export_run

        result = export_run(args.run, fmt=args.fmt, out=args.out, opset=args.opset, check=args.check)
        print(f"exported {result['model']} (preprocessing: {result['preprocessing']})")
        for c in result.get("verification", {}).get("checks", []):
            print(f"  batch {c['batch_size']}: max |exported - PyTorch| {c['max_abs_diff']:.3g} rating units")
        return 0
    if args.command == "validate-data":
        from perception_shared.validation import report_and_exit

        from .validate import validate_data

        cfg = load_rating_config(args.config, args.overrides, data=args.path)
        return report_and_exit(validate_data(cfg.data), args.json)
    if args.command == "weights":
        from perception_shared.pretrained import WeightsRequest, weights_command

        from .train import weights_manifest_path

        requests = {
            name: [WeightsRequest(c.model.backbone, c.model.pretrained, c.model.weights_file)]
            for name, c in _shipped_configs().items()
        }
        return weights_command(args, package="image-rating", requests=requests, manifest_path=weights_manifest_path())
    if args.command == "verify-setup":
        from .verify import format_report, verify_setup

        cfg = load_rating_config(args.config, args.overrides, data=args.data)
        checks = verify_setup(cfg, device=args.device, skip_bad=args.skip_bad)
        print(format_report(checks, f"image-rating {__version__} verify-setup (config {args.config})"))
        return 1 if any(c.status == "fail" for c in checks) else 0
    if args.command == "make-synthetic":
        from .synthetic import make_synthetic

        check_option("--n-images", args.n_images, low=4, high=1_000_000)
        check_option("--size", args.size, low=16, high=4096)
        check_option("--raters", args.raters, low=2, high=100_000)
        check_option("--noise-scale", args.noise_scale, low=0)
        check_option("--seed", args.seed, low=0)
        with writing_output(args.out, "make-synthetic"):
            syn = make_synthetic(
                args.out,
                n_images=args.n_images,
                size=args.size,
                n_raters=args.raters,
                noise_scale=args.noise_scale,
                seed=args.seed,
            )
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
