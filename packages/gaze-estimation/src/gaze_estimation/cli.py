"""``gaze-estimation``: train, evaluate, predict, make-synthetic, convert-eve, demo."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from perception_shared.cli import add_common_train_args, resolve_resume, run_cli
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed, resolve_device
from perception_shared.errors import UserError
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir

from . import __version__

PACKAGE = "gaze_estimation"
DEFAULT_CONFIG = "eve_lite"


def _train(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .train import train

    spec = resolve_resume(args)
    config = args.config
    if config is None:
        saved = spec.run_dir / "config.yaml" if spec.run_dir is not None else None
        config = saved if spec.resume and saved is not None and saved.is_file() else DEFAULT_CONFIG
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, config), args.overrides)
    if args.data is not None:
        cfg.data.root = Path(args.data)
    ctx = init_distributed(args.device)
    run_dir = prepare_run_dir(args.output_dir, spec.run_dir)
    setup_logging(run_dir)
    train(cfg, ctx=ctx, run_dir=run_dir, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=args.skip_bad)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.run_dir, args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.parent / f"evaluation_{args.split or 'val'}"
    ctx = init_distributed(args.device)
    setup_logging(out, filename="evaluate.log")
    evaluate(
        checkpoint, ctx=ctx, out_dir=out, data_root=args.data, split=args.split, batch_size=args.batch_size,
        num_workers=args.num_workers, skip_bad=args.skip_bad,
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .evaluate import resolve_checkpoint
    from .predict import TraceOptions, predict

    setup_logging(None)
    checkpoint = resolve_checkpoint(args.run_dir, args.checkpoint)
    trace = None
    if args.trace_csv:
        trace = TraceOptions(Path(args.trace_csv), *args.screen_px, distance_px=args.distance_px, fps=args.fps)
    predict(
        checkpoint, args.input, args.out, device=resolve_device(args.device), batch_size=args.batch_size,
        num_workers=args.num_workers, trace=trace,
    )
    return 0


def _make_synthetic(args: argparse.Namespace) -> int:
    from .synthetic import make_synthetic

    setup_logging(None)
    files = make_synthetic(
        args.out, train_participants=args.train_participants, val_participants=args.val_participants,
        samples_per_participant=args.samples, seed=args.seed, camera=args.camera,
    )
    print(f"wrote {len(files)} files under {args.out}")
    return 0


def _convert_eve(args: argparse.Namespace) -> int:
    from .convert import convert_eve

    setup_logging(None)
    files = convert_eve(
        args.src, args.dst, camera=args.camera, splits=args.splits, participants=args.participants,
        every=args.every, compression=None if args.compression == "none" else args.compression, skip_bad=args.skip_bad,
    )
    print(f"wrote {len(files)} files under {args.dst}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaze-estimation",
        description="GazeTR-style 3D gaze estimation (pitch/yaw) from face and eye crops, trained on EVE.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (DDP under torchrun)", description="Train a gaze model on HDF5 data.")
    add_common_train_args(p)
    p.add_argument("--data", default=None, metavar="DIR", help="data root (overrides data.root of the config)")
    p.epilog = f"Without --config: the run's config.yaml when resuming, else '{DEFAULT_CONFIG}'."
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate", help="evaluate a checkpoint: metrics JSON, per-participant CSV, figures",
        description="Evaluate a run's best_model.pth (or --checkpoint) on a split; works under torchrun.",
    )
    p.add_argument("--run-dir", default=None, help="run directory (reads best_model.pth)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: RUN_DIR/best_model.pth)")
    p.add_argument("--data", default=None, metavar="DIR", help="data root (default: the one in the checkpoint's config)")
    p.add_argument("--split", default=None, help="split folder prefix under the data root (default: the config's val split)")
    p.add_argument("--out", default=None, help="output folder (default: next to the checkpoint, evaluation_<split>)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad", action="store_true", help="skip bad input files with a counted warning")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "predict", help="predict gaze for an HDF5 file or face/leye/reye image folders -> CSV",
        description="Writes sample,pitch,yaw,x,y,z per sample (radians; (x,y,z) = pitchyaw_to_vector, EVE's convention).",
    )
    p.add_argument("input", help="an HDF5 file in the training format, or a folder with face/, leye/, reye/ images")
    p.add_argument("--run-dir", default=None, help="run directory (reads best_model.pth)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: RUN_DIR/best_model.pth)")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--trace-csv", default=None,
        help="also write the predictions as a screen gaze trace (sequence,t,x,y), the format sparse-video-loss import-csv reads",
    )
    p.add_argument("--screen-px", type=float, nargs=2, default=(1920.0, 1080.0), metavar=("W", "H"),
                   help="virtual screen size in pixels for --trace-csv (default 1920 1080)")
    p.add_argument("--distance-px", type=float, default=2083.0,
                   help="eye-to-screen distance in screen pixels for --trace-csv (default 2083: 60 cm on EVE's screen)")
    p.add_argument("--fps", type=float, default=10.0, help="samples per second of the input, for --trace-csv (default 10)")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "make-synthetic", help="render synthetic participants with known gaze (HDF5 training format)",
        description="Rendered face and eye crops whose gaze (pitch/yaw) is known exactly; seeded.",
    )
    p.add_argument("out", help="output data root (gets train/ and val/)")
    p.add_argument("--train-participants", type=int, default=4)
    p.add_argument("--val-participants", type=int, default=2)
    p.add_argument("--samples", type=int, default=64, help="samples per participant (default: 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--camera", default="basler", help="file name frames_<camera>.h5 (default: basler)")
    p.set_defaults(func=_make_synthetic)

    p = sub.add_parser(
        "convert-eve", help="convert the EVE release (train/val participants) into the HDF5 training format",
        description="Reads <camera>.h5 (face_g_tobii), <camera>_face.mp4 and <camera>_eyes.mp4 of every stimulus folder.",
    )
    p.add_argument("src", help="EVE root (holds train01 ... val05)")
    p.add_argument("dst", help="output data root")
    p.add_argument("--camera", default="basler", choices=["basler", "webcam_l", "webcam_c", "webcam_r"])
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--participants", nargs="+", default=None, metavar="NAME", help="only these folders (e.g. train01 val02)")
    p.add_argument("--every", type=int, default=6, help="keep every N-th frame (basler is 60 Hz; default 6 = 10 Hz)")
    p.add_argument("--compression", default="none", choices=["none", "gzip", "lzf"])
    p.add_argument("--skip-bad", action="store_true", help="skip bad stimulus folders with a counted warning")
    p.set_defaults(func=_convert_eve)

    p = sub.add_parser("demo", help="the whole pipeline on tiny synthetic data (CPU, < 2.5 min)")
    p.add_argument("--out", required=True, help="output folder (summary.json and everything else)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_demo)
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("evaluate", "predict") and args.run_dir is None and args.checkpoint is None:
        raise UserError(f"{args.command} needs --run-dir or --checkpoint")
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
