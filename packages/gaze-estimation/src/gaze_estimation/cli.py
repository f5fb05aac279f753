"""``gaze-estimation``: the common subcommands (``perception_shared.cli``) plus ``predict-raw`` and ``convert-eve``.

make-synthetic, validate-data, train, evaluate RUN, compare RUN_A RUN_B, predict --run RUN, export RUN,
weights, demo, predict-raw --run RUN, convert-eve. The CLI only parses arguments and calls the functions the tests call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from perception_shared.cli import (
    RUN_HELP,
    add_allow_data_mismatch_arg,
    add_config_args,
    add_demo_command,
    add_device_arg,
    add_evaluate_command,
    add_export_command,
    add_loader_args,
    add_make_synthetic_command,
    add_predict_command,
    add_skip_bad_arg,
    add_train_command,
    add_validate_data_command,
    add_weights_command,
    resolve_resume,
    resolve_run,
    run_cli,
)
from perception_shared.config import load_config, packaged_config_dir, resolve_config_path
from perception_shared.distributed import init_distributed, resolve_device
from perception_shared.errors import ConfigError
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir

from . import __version__
from .config import TrainConfig

PACKAGE = "gaze_estimation"
DEFAULT_CONFIG = "eve_lite"
DATA_HELP = "data root holding <split>*/participant_*/frames_<camera>.h5 (sets data.root)"


def load_train_config(
    config: str | Path, overrides: Sequence[str] = (), *, data: str | None = None, weights: str | None = None, seed: int | None = None
) -> TrainConfig:
    """A config by name or path with ``--set`` overrides, ``--data``, ``--weights`` and ``--seed`` applied.

    ``--weights PATH`` is a local file for the backbones: both roles when the face and eye backbones
    ask for the same weights (``gazetr_lite``); otherwise name the role with
    ``--set model.face_weights_file=...`` / ``model.eye_weights_file=...``.
    """
    sets = list(overrides)
    if data:
        sets.append(f"data.root={data}")
    if seed is not None:
        sets.append(f"seed={seed}")
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, config), sets)
    if weights:
        face, eye = cfg.model.weights_identifier("face"), cfg.model.weights_identifier("eye")
        if face is None:
            raise ConfigError(f"--weights: model {cfg.model.name} has no pretrained backbones")
        if face != eye:
            raise ConfigError(
                f"--weights: the face ({face}) and eye ({eye}) backbones ask for different weights; give each with "
                "--set model.face_weights_file=PATH and --set model.eye_weights_file=PATH"
            )
        cfg.model.face_weights_file = cfg.model.eye_weights_file = Path(weights)
    return cfg


def shipped_configs() -> dict[str, TrainConfig]:
    """Every config in the package's configs folder, by name."""
    return {p.stem: load_config(TrainConfig, p) for p in sorted(packaged_config_dir(PACKAGE).glob("*.yaml"))}


def check_synthetic_args(args: argparse.Namespace) -> None:
    """Every make-synthetic count in range, and options only where they apply: a ConfigError naming the option."""
    ranges = (
        ("--train-participants", args.train_participants, 1), ("--val-participants", args.val_participants, 0),
        ("--samples", args.samples, 1), ("--camera-images", args.camera_images, 0),
    )
    for option, value, least in ranges:
        if value < least:
            raise ConfigError(f"make-synthetic {option} must be at least {least}, got {value}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"make-synthetic --steps must be at least 1, got {args.steps}")
    if args.steps is not None and args.format != "eve" and not args.sequences:
        raise ConfigError("--steps applies to --format eve only, or to --sequences (single-frame training data has no steps)")
    if not 0 <= args.blink_prob < 1 or min(args.pupil_jitter_deg, args.crop_jitter_px) < 0:
        raise ConfigError(
            f"make-synthetic --blink-prob must be in [0, 1), --pupil-jitter-deg and --crop-jitter-px >= 0; got {args.blink_prob}, "
            f"{args.pupil_jitter_deg} and {args.crop_jitter_px}"
        )
    if args.sequences and args.format == "eve":
        raise ConfigError("--sequences writes the training format; --format eve writes EVE's own layout with its steps (use --steps)")


def _make_synthetic(args: argparse.Namespace) -> int:
    from .synthetic import make_camera_images, make_synthetic
    from .synthetic_eve import make_synthetic_eve
    from .synthetic_sequences import SequenceNoise, make_synthetic_sequences

    check_synthetic_args(args)
    setup_logging(None)
    if args.format == "eve":
        folders = make_synthetic_eve(
            args.out, train_participants=args.train_participants, val_participants=args.val_participants,
            steps=3 if args.steps is None else args.steps, frames=args.samples, seed=args.seed, camera=args.camera,
        )
        print(f"wrote {len(folders)} participant folders in the raw EVE layout under {args.out} (convert-eve reads them)")
    elif args.sequences:
        noise = SequenceNoise(blink_prob=args.blink_prob, pupil_jitter_deg=args.pupil_jitter_deg, crop_jitter=args.crop_jitter_px)
        files = make_synthetic_sequences(
            args.out, train_participants=args.train_participants, val_participants=args.val_participants,
            steps=4 if args.steps is None else args.steps, frames_per_step=args.samples, seed=args.seed, camera=args.camera,
            noise=noise,
        )
        print(f"wrote {len(files)} participant files of 10 Hz sequences under {args.out} (train a temporal model with --config temporal_demo)")
    else:
        files = make_synthetic(
            args.out, train_participants=args.train_participants, val_participants=args.val_participants,
            samples_per_participant=args.samples, seed=args.seed, camera=args.camera,
        )
        print(f"wrote {len(files)} participant files under {args.out} (train on them with --config demo)")
    if args.camera_images:
        folder = make_camera_images(Path(args.out) / "camera", args.camera_images, seed=args.seed)
        print(f"wrote {args.camera_images} camera images with their truth and a calibration file under {folder}")
    return 0


def _validate_data(args: argparse.Namespace) -> int:
    from perception_shared.validation import report_and_exit

    from .validate import validate_data

    setup_logging(None)
    cfg = load_train_config(args.config, args.overrides)
    return report_and_exit(validate_data(args.path, camera=cfg.data.camera), args.json)


def _train(args: argparse.Namespace) -> int:
    from .train import train

    spec = resolve_resume(args)
    config = args.config
    if config is None:
        saved = spec.run_dir / "config.yaml" if spec.run_dir is not None else None
        config = saved if spec.resume and saved is not None and saved.is_file() else DEFAULT_CONFIG
    overrides = list(args.overrides)
    if args.init_from:
        overrides.append(f"model.init_from={resolve_run(args.init_from).checkpoint}")
    cfg = load_train_config(config, overrides, data=args.data, weights=args.weights, seed=args.seed)
    ctx = init_distributed(args.device)
    run_dir = prepare_run_dir(args.output_dir, spec.run_dir)
    setup_logging(run_dir)
    train(cfg, ctx=ctx, run_dir=run_dir, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=args.skip_bad, argv=sys.argv)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    run = resolve_run(args.run)
    out = Path(args.out) if args.out else run.run_dir / f"evaluation_{args.split or 'val'}"
    ctx = init_distributed(args.device)
    setup_logging(out, filename="evaluate.log")
    metrics = evaluate(
        run.checkpoint, ctx=ctx, out_dir=out, data_root=args.data, split=args.split, batch_size=args.batch_size,
        num_workers=args.num_workers, skip_bad=args.skip_bad, allow_data_mismatch=args.allow_data_mismatch,
    )
    if ctx.is_main:
        print(
            f"{metrics['n_samples']} samples of {metrics['split']}: mean angular error {metrics['mean_angular_error_deg']:.3f} deg "
            f"(median {metrics['median_angular_error_deg']:.3f}); weights: {metrics['weights_used']}. "
            f"{metrics['protocol']['statement']}. Wrote {out / 'metrics.json'}"
        )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs

    ctx = init_distributed(args.device)
    out = Path(args.out)
    setup_logging(out, filename="compare.log")
    report = compare_runs(
        args.run_a, args.run_b, ctx=ctx, out_dir=out, data_root=args.data, split=args.split,
        allow_data_mismatch=args.allow_data_mismatch, confidence=args.confidence, n_boot=args.n_boot,
        batch_size=args.batch_size, num_workers=args.num_workers,
    )
    if ctx.is_main:
        print(f"{report['n_frames']} frames of {len(report['participants'])} participants; {report['verdict']}. Wrote {out / 'compare.json'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .predict import TraceOptions, predict

    setup_logging(None)
    run = resolve_run(args.run)
    trace = None
    if args.trace_csv:
        trace = TraceOptions(Path(args.trace_csv), *args.screen_px, distance_px=args.distance_px, fps=args.fps)
    out = predict(
        run.checkpoint, args.inputs, args.out, device=resolve_device(args.device), batch_size=args.batch_size or 64,
        num_workers=args.num_workers, trace=trace,
    )
    print(f"wrote {out}")
    return 0


def _predict_raw(args: argparse.Namespace) -> int:
    from .raw import RawConfig, run_predict_raw

    setup_logging(None)
    run = resolve_run(args.run)
    overrides = list(args.overrides)
    if args.detector:
        overrides.append(f"landmarks.detector={args.detector}")
    if args.smooth:
        overrides.append("landmarks.smooth=true")
    cfg = load_config(RawConfig, Path(args.config) if args.config else None, overrides)
    summary = run_predict_raw(
        run.checkpoint, args.inputs, args.out, config=cfg, calibration=args.calibration, device=resolve_device(args.device),
        batch_size=args.batch_size or 32, annotate=args.annotate,
    )
    print(
        f"{summary['frames']} frame(s), a face in {summary['frames_with_face']} ({summary['faces_found']} face(s)); wrote {summary['outputs']['csv']} "
        f"(pitch/yaw in the camera's coordinates, EVE's convention: see gaze_summary.json)"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    setup_logging(None)
    result = export_run(args.run, fmt=args.fmt, out=args.out, opset=args.opset, check=args.check)
    print(f"wrote {result['path']} and {result['preprocessing']}" + (f"; checked: {result['check']}" if result.get("check") else ""))
    return 0


def _weights(args: argparse.Namespace) -> int:
    from perception_shared.pretrained import weights_command

    from .models import weights_manifest_path

    requests = {name: cfg.model.weights_requests() for name, cfg in shipped_configs().items()}
    return weights_command(args, package="gaze-estimation", requests=requests, manifest_path=weights_manifest_path())


def _convert_eve(args: argparse.Namespace) -> int:
    from .convert import convert_eve

    setup_logging(None)
    files = convert_eve(
        args.src, args.dst, camera=args.camera, splits=args.splits, participants=args.participants,
        every=args.every, compression=None if args.compression == "none" else args.compression, skip_bad=args.skip_bad,
        workers=args.workers, force=args.force,
    )
    print(f"{len(files)} participant file(s) complete under {args.dst}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device, config=args.config, overrides=args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaze-estimation",
        description="GazeTR-style 3D gaze estimation (pitch/yaw) from face and eye crops, trained on EVE.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_make_synthetic_command(
        sub,
        description="Rendered participants whose gaze (pitch/yaw) is known exactly, in the HDF5 training format "
        "(OUT/train, OUT/val) or, with --format eve, in the raw EVE release layout that convert-eve reads (OUT/train01, "
        "OUT/val01, ...: step folders with <camera>.h5, face and eye videos, timestamps, and a calibration step); with "
        "--camera-images also camera images of rendered faces for predict-raw.",
    )
    p.add_argument(
        "--format", choices=("training", "eve"), default="training",
        help="training: HDF5 crops train reads (default); eve: the raw EVE release layout (256 px face, 2 x 128 px eye videos)",
    )
    p.add_argument("--train-participants", type=int, default=4)
    p.add_argument("--val-participants", type=int, default=2)
    p.add_argument("--samples", type=int, default=64, help="samples per participant; with --format eve or --sequences frames per step (default: 64)")
    p.add_argument(
        "--steps", type=int, default=None,
        help="stimulus steps per participant: --format eve (besides the calibration step; default 3) or --sequences (default 4)",
    )
    p.add_argument(
        "--sequences", action="store_true",
        help="10 Hz video of each step (fixations, saccades, drift; noisy single frames: pupil jitter, blinks) with "
        "step_index/frame_index, for temporal models (--config temporal_demo)",
    )
    p.add_argument("--blink-prob", type=float, default=0.3, help="--sequences: probability that a frame shows closed eyes (default 0.3)")
    p.add_argument(
        "--pupil-jitter-deg", type=float, default=5.0,
        help="--sequences: std per axis (degrees) of where the iris is drawn around the true gaze in each frame (default 5)",
    )
    p.add_argument(
        "--crop-jitter-px", type=float, default=1.2,
        help="--sequences: std (face-crop pixels) of each crop's misalignment per frame (default 1.2, as the single-frame renderer)",
    )
    p.add_argument("--camera", default="basler", help="file name frames_<camera>.h5, or <camera>.h5 and <camera>_*.mp4 with --format eve (default: basler)")
    p.add_argument(
        "--camera-images", type=int, default=0, metavar="N",
        help="also write N camera images (OUT/camera/*.png) with their true gaze and head pose and a calibration file",
    )
    p.set_defaults(func=_make_synthetic)

    p = add_validate_data_command(
        sub,
        path_help="a data root in the training format (<split>*/participant_*/frames_<camera>.h5), or the raw EVE "
        "release (train01 ... val05) that convert-eve reads",
        default_config="eve_lite",
        description="Read every file completely (every crop decoded, every video frame counted), check shapes, "
        "value ranges and labels with the loaders' own checks, print a summary and every problem; exit 1 when there "
        "is one. --config/--set give data.camera.",
    )
    p.set_defaults(func=_validate_data)

    p = add_train_command(
        sub,
        data_help=DATA_HELP,
        description=f"Train a gaze model on HDF5 data (DDP under torchrun). Without --config: the run's config.yaml "
        f"when resuming, else {DEFAULT_CONFIG}. --weights PATH: a local file for the backbones (both roles when they "
        "ask for the same weights).",
    )
    p.add_argument(
        "--init-from", metavar="RUN",
        help="a trained single-frame run (directory or checkpoint) whose model starts a gazetr_temporal frame encoder "
        "(sets model.init_from; model.freeze_encoder_epochs trains the temporal module alone first)",
    )
    p.set_defaults(func=_train)

    p = add_evaluate_command(
        sub,
        data_help="data root to evaluate on instead of the run's own (same format)",
        description="Evaluate a run (RUN: its directory, using best_model.pth, or a checkpoint file) on the validation "
        "participants; works under torchrun. The model was selected on held-out training participants.",
    )
    p.add_argument("--split", default=None, help="split folder prefix under the data root (default: the config's val split)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "compare",
        help="compare two runs on the same frames: paired error difference, bootstrap CI over participants, verdict",
        description="Evaluate RUN_A and RUN_B on the same validation frames (or --data), pair their per-frame angular "
        "errors, and give the mean difference B - A with a bootstrap confidence interval that resamples participants, "
        "and a one-line verdict. Refuses runs whose manifests record different report data unless --allow-data-mismatch.",
    )
    p.add_argument("run_a", metavar="RUN_A", help=RUN_HELP)
    p.add_argument("run_b", metavar="RUN_B", help=RUN_HELP)
    p.add_argument("--data", metavar="PATH", help="data root to compare on instead of the runs' own (same format)")
    p.add_argument("--split", default=None, help="split folder prefix (default: the configs' val split)")
    p.add_argument("--out", default="comparison", help="output folder (default: comparison)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the interval (default 0.95)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    add_device_arg(p)
    add_loader_args(p)
    add_allow_data_mismatch_arg(p)
    p.set_defaults(func=_compare)

    p = add_predict_command(
        sub,
        inputs_help="HDF5 files in the training format, or folders with face/, leye/ and reye/ crop images",
        description="Predict gaze for normalized crops. Writes source,sample,pitch,yaw,x,y,z per sample (radians; "
        "(x,y,z) = pitchyaw_to_vector, EVE's convention). For camera images or videos use predict-raw.",
        out_default="predictions.csv",
        out_help="output CSV",
    )
    p.add_argument("--num-workers", type=int, default=0)
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
        "predict-raw",
        help="gaze from camera images, folders or videos of a face: CSV per frame, optional annotated PNG/MP4",
        description="Detect the face and its landmarks, normalize (virtual camera at the face centre, head roll removed), "
        "run the model, rotate the gaze back into the camera's coordinates, and with --calibration intersect it with the "
        "screen. Writes OUT/gaze.csv and OUT/gaze_summary.json (conventions in the README).",
    )
    p.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images or videos, video files")
    p.add_argument("--out", default="gaze_raw", help="output folder (default: gaze_raw)")
    p.add_argument("--calibration", metavar="FILE", help="camera matrix and screen pose: JSON/YAML, or an EVE <camera>.h5")
    p.add_argument("--annotate", action="store_true", help="also write the frames with the gaze drawn (PNG per image, MP4 per video)")
    p.add_argument(
        "--detector", choices=("dlib", "haar", "mediapipe"), default=None,
        help="face and landmark detector (sets landmarks.detector; default: dlib when installed, else haar)",
    )
    p.add_argument(
        "--smooth", action="store_true",
        help="smooth landmarks over time in videos (sets landmarks.smooth; off by default, so images and videos give the same numbers)",
    )
    add_config_args(p)
    add_device_arg(p)
    p.add_argument("--batch-size", type=int, help="faces per model batch (default 32)")
    p.set_defaults(func=_predict_raw)

    add_export_command(
        sub,
        description="Export a run's model to ONNX or TorchScript: inputs face (batch, 3, 224, 224), leye and reye "
        "(batch, 3, 112, 112), float RGB in [0, 1] (normalization is inside); output (batch, 2) pitch/yaw radians; "
        "the crops' normalization is written as JSON beside it.",
    ).set_defaults(func=_export)
    add_weights_command(sub).set_defaults(func=_weights)

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
    p.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="participants converted in parallel (default: the CPUs this process may use, e.g. SLURM_CPUS_PER_TASK)",
    )
    p.add_argument("--force", action="store_true", help="convert every participant again, also those already complete")
    add_skip_bad_arg(p)
    p.set_defaults(func=_convert_eve)

    add_demo_command(
        sub, default_out="demo_outputs/gaze-estimation",
        description="make-synthetic -> train (configs/demo.yaml, RANDOM INIT) -> evaluate -> predict -> export -> "
        "predict-raw on rendered camera images; writes OUT/summary.json and prints its wall time.",
    ).set_defaults(func=_demo)
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
