"""``sparse-video-loss``: make or import data, train SimVP, evaluate, compare losses, run the demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from perception_shared.badinput import BadInputPolicy
from perception_shared.cli import add_common_train_args, add_config_args, resolve_resume, run_cli
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed
from perception_shared.errors import UserError
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir

from . import __version__
from .config import DEFAULT_CONFIG, PACKAGE, TrainConfig
from .losses import LOSSES


def _load_cfg(args: argparse.Namespace) -> TrainConfig:
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, args.config), args.overrides)
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(args.data)))
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    spec = resolve_resume(args)
    cfg = _load_cfg(args)
    ctx = init_distributed(args.device)
    run_dir = prepare_run_dir(args.output_dir, spec.run_dir)
    setup_logging(run_dir)
    result = train(cfg, run_dir=run_dir, ctx=ctx, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=args.skip_bad)
    if ctx.is_main:
        print(f"run directory: {result.run_dir} (best {cfg.loop.monitor} {result.best_metric} at epoch {result.best_epoch})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    if args.checkpoint is None and args.run_dir is None:
        raise UserError("evaluate needs a run directory (RUN_DIR) or --checkpoint PATH")
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.run_dir) / "best_model.pth"
    out = Path(args.out) if args.out else checkpoint.parent / "eval"
    ctx = init_distributed(args.device)
    setup_logging(out, filename="evaluate.log")
    metrics = evaluate_run(checkpoint, out, ctx, data_root=args.data, batch_size=args.batch_size, skip_bad=args.skip_bad)
    if ctx.is_main:
        o = metrics["overall"]
        print(
            f"{metrics['n_samples']} test sequences: F1@0.5 {o['f1@0.5']:.3f}, F1@best {o['f1@best']:.3f} "
            f"(threshold {metrics['threshold_best']:.3g} from val), AP {o['ap']:.3f}, "
            f"localization error {o['loc_error_px']:.2f} px -> {out / 'metrics.json'}"
        )
    return 0


def _cmd_make_synthetic(args: argparse.Namespace) -> int:
    from .synthetic import make_synthetic

    try:
        paths = make_synthetic(
            args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, frames=args.frames, size=args.size, seed=args.seed
        )
    except ValueError as e:
        raise UserError(f"make-synthetic: {e}") from None
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_import_csv(args: argparse.Namespace) -> int:
    from .importer import import_csv

    try:
        fractions = tuple(float(v) for v in args.fractions.split(","))
    except ValueError:
        raise UserError(f"--fractions must be three comma-separated numbers, got {args.fractions!r}") from None
    setup_logging(None)
    report = import_csv(
        args.csv,
        args.out,
        screen_width=args.screen_width,
        screen_height=args.screen_height,
        size=args.size,
        frame_rate=args.frame_rate,
        frames=args.frames,
        stride=args.stride,
        fractions=fractions,  # type: ignore[arg-type]
        seed=args.seed,
        policy=BadInputPolicy(skip=args.skip_bad),
    )
    report["paths"] = {k: str(v) for k, v in report["paths"].items()}
    print(json.dumps(report, indent=2))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, parse_losses

    losses = parse_losses(args.losses)
    cfg = _load_cfg(args)
    ctx = init_distributed(args.device)
    result = compare(cfg, losses, args.out, ctx, skip_bad=args.skip_bad)
    if ctx.is_main:
        print(f"comparison of {len(losses)} loss(es): {result['outputs']['table_md']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-video-loss",
        description="SimVP video prediction on sparse frames (one active pixel per frame): which loss recovers the future positions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train SimVP with one loss", description="Train SimVP 10 -> 10 frames with the loss of the config.")
    add_common_train_args(p, DEFAULT_CONFIG)
    p.add_argument("--data", default=None, help="data directory with train.pt, val.pt, test.pt (overrides data.root)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a run on the test split",
        description="Choose the F1-best threshold on val, then write per-horizon metrics of the test split "
        "(metrics.json, per_horizon.csv, per_horizon.png, predictions.png) with blank and last-position baselines.",
    )
    p.add_argument("run_dir", nargs="?", default=None, help="run directory (its best_model.pth is evaluated)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file to evaluate instead of RUN_DIR/best_model.pth")
    p.add_argument("--data", default=None, help="data directory (default: the one in the checkpoint's config)")
    p.add_argument("--out", default=None, help="output directory (default: <checkpoint dir>/eval)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: data.eval_batch_size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad", action="store_true", help="skip bad sequences with a counted warning instead of failing")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "make-synthetic",
        help="write synthetic gaze-like sequences (train/val/test .pt)",
        description="Sequences with fixations (3-12 frames), saccades (5-14 px jumps) and smooth pursuit, seeded, in the real on-disk format.",
    )
    p.add_argument("out", help="output directory")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--frames", type=int, default=20, help="frames per sequence (n_input + n_output; default 20)")
    p.add_argument("--size", type=int, default=32, help="grid side in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_synthetic)

    p = sub.add_parser(
        "import-csv",
        help="bin raw gaze/event traces (CSV: sequence,t,x,y[,split]) into train/val/test .pt",
        description="Read a CSV with columns sequence, t (seconds), x, y (screen pixels, origin top-left) and "
        "optionally split; bin to --frame-rate frames and a --size grid; cut into windows of --frames frames.",
    )
    p.add_argument("csv", help="input CSV file")
    p.add_argument("out", help="output directory for train.pt, val.pt, test.pt")
    p.add_argument("--screen-width", type=float, required=True, help="screen width in pixels (the x range)")
    p.add_argument("--screen-height", type=float, required=True, help="screen height in pixels (the y range)")
    p.add_argument("--size", type=int, default=32, help="grid side in pixels (default 32)")
    p.add_argument("--frame-rate", type=float, default=25.0, help="frames per second of the binned sequences (default 25)")
    p.add_argument("--frames", type=int, default=20, help="frames per window (default 20 = 10 in + 10 out)")
    p.add_argument("--stride", type=int, default=None, help="frames between window starts (default: --frames, no overlap)")
    p.add_argument("--fractions", default="0.8,0.1,0.1", help="train,val,test shares of sequences without a split column")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split assignment")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows with a counted warning instead of failing")
    p.set_defaults(func=_cmd_import_csv)

    p = sub.add_parser(
        "compare",
        help="train and evaluate several losses with the same data, seed and budget",
        description=f"Train one run per loss (all, or a comma list of: {', '.join(LOSSES)}), evaluate each, and write "
        "comparison.md/.csv/.json, per_horizon.png and prediction_grid.png. Existing runs in OUT are resumed.",
    )
    add_config_args(p, DEFAULT_CONFIG)
    p.add_argument("--losses", default="all", help="'all' or a comma-separated list of loss names")
    p.add_argument("--out", required=True, help="output directory (runs/<loss>/ and the comparison files)")
    p.add_argument("--data", default=None, help="data directory (overrides data.root)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad", action="store_true", help="skip bad sequences with a counted warning instead of failing")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="the whole pipeline on tiny synthetic data (under 2.5 min on 2 CPU cores)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_demo)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
