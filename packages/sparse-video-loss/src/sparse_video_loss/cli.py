"""``sparse-video-loss``: the common subcommands (``perception_shared.cli``) plus ``compare`` and ``import-csv``.

make-synthetic, validate-data, train, evaluate RUN, predict --run RUN TRACE.csv, export RUN, weights, demo,
compare, import-csv. The CLI only parses arguments and calls the functions the tests call.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from perception_shared.badinput import BadInputPolicy
from perception_shared.cli import (
    add_allow_data_mismatch_arg,
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
    resolve_run,
    run_cli,
    writing_output,
)
from perception_shared.config import load_config, packaged_config_dir, resolve_config_path
from perception_shared.distributed import init_distributed, resolve_device
from perception_shared.errors import UserError
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir

from . import __version__
from .config import DEFAULT_CONFIG, PACKAGE, OriginalFormatConfig, TrainConfig
from .importer import MAX_SAMPLE_INTERVAL_S
from .losses import LOSSES

DATA_HELP = "data directory: train.pt/val.pt/test.pt, or the study's train_data.pt/... with data.format: original (sets data.root)"


def load_train_config(
    config: str | Path, overrides: Sequence[str] = (), *, data: str | None = None, weights: str | None = None, seed: int | None = None
) -> TrainConfig:
    """A config by name or path with ``--set`` overrides, ``--data``, ``--weights`` and ``--seed`` applied."""
    sets = list(overrides)
    if data:
        sets.append(f"data.root={data}")
    if weights:
        sets.append(f"model.weights={weights}")
    if seed is not None:
        sets.append(f"seed={seed}")
    return load_config(TrainConfig, resolve_config_path(PACKAGE, config), sets)


def shipped_configs() -> dict[str, TrainConfig]:
    """Every config in the package's configs folder, by name."""
    return {p.stem: load_config(TrainConfig, p) for p in sorted(packaged_config_dir(PACKAGE).glob("*.yaml"))}


def _add_max_interval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-sample-interval", type=float, default=MAX_SAMPLE_INTERVAL_S, metavar="SECONDS",
        help=f"refuse traces whose median sample interval reaches this (t in ms or us by mistake; default {MAX_SAMPLE_INTERVAL_S})",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    spec = resolve_resume(args)
    cfg = load_train_config(args.config, args.overrides, data=args.data, weights=args.weights, seed=args.seed)
    ctx = init_distributed(args.device)
    run_dir = prepare_run_dir(args.output_dir, spec.run_dir)
    setup_logging(run_dir)
    result = train(cfg, run_dir=run_dir, ctx=ctx, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=args.skip_bad, argv=sys.argv)
    if ctx.is_main:
        print(f"run directory: {result.run_dir} (best {cfg.loop.monitor} {result.best_metric} at epoch {result.best_epoch})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    run = resolve_run(args.run)
    out = Path(args.out) if args.out else run.run_dir / "eval"
    ctx = init_distributed(args.device)
    setup_logging(out, filename="evaluate.log")
    metrics = evaluate_run(
        run.checkpoint, out, ctx, data_root=args.data, batch_size=args.batch_size, num_workers=args.num_workers,
        skip_bad=args.skip_bad, allow_data_mismatch=args.allow_data_mismatch,
    )
    if ctx.is_main:
        o = metrics["overall"]
        print(
            f"{metrics['n_samples']} test sequences: localization error {o['loc_error_px']:.2f} px, hit@1px {o['hit@1px']:.3f}, "
            f"hit@2px {o['hit@2px']:.3f}; F1@best {o['f1@best']:.3f} (threshold {metrics['threshold_best']:.3g} from val), "
            f"F1@0.5 {o['f1@0.5']:.3f}, AP {o['ap']:.3f}; weights: {metrics['weights'].get('identifier')}"
            f"{' RANDOM INIT' if metrics['random_init'] else ''} -> {out / 'metrics.json'}"
        )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_traces

    setup_logging(None)
    info = predict_traces(
        args.run, args.inputs, args.out, screen_width=args.screen_width, screen_height=args.screen_height,
        frame_rate=args.frame_rate, device=resolve_device(args.device), batch_size=args.batch_size,
        max_interval_s=args.max_sample_interval,
    )
    print(f"predicted {info['n_output']} frames for {len(info['predicted_sequences'])} trace(s) -> {info['outputs']['positions_csv']}, "
          f"{info['outputs']['strip_png']}" + (f"; skipped {len(info['skipped'])} short trace(s)" if info["skipped"] else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    result = export_run(args.run, args.fmt, args.out, opset=args.opset, check=args.check)
    check = result.get("check")
    detail = "" if check is None else "; outputs equal PyTorch's at batch sizes " + ", ".join(
        f"{c['batch_size']} (max |diff| {c['max_abs_diff']:.2g})" for c in check["checks"])
    print(f"exported {result['model']} and {result['preprocessing']}{detail}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from perception_shared.validation import report_and_exit

    from .validate import validate_data

    setup_logging(None)
    cfg = load_train_config(args.config, args.overrides)
    return report_and_exit(validate_data(args.path, cfg.data, max_interval_s=args.max_sample_interval), args.json)


def _cmd_weights(args: argparse.Namespace) -> int:
    from perception_shared.pretrained import WeightsRequest, weights_command

    from .train import model_identifier, weights_manifest_path

    requests = {
        name: [WeightsRequest(model_identifier(cfg.model), pretrained=False, file=None, role="model")]
        for name, cfg in shipped_configs().items()
    }
    code = weights_command(args, package="sparse-video-loss", requests=requests, manifest_path=weights_manifest_path())
    print("SimVP has no pretrained backbone: SimVP is trained from scratch in the study, so every config starts from random "
          "initialization (recorded as such in each run); `train --weights PATH` starts from a SimVP state dict of your own.")
    return code


def _cmd_make_synthetic(args: argparse.Namespace) -> int:
    from .synthetic import make_synthetic

    original = OriginalFormatConfig() if args.format == "original" else None
    for option, value in (("--n-train", args.n_train), ("--n-val", args.n_val), ("--n-test", args.n_test)):
        check_option(option, value, low=1, high=1_000_000)
    check_option("--frames", args.frames, low=2, high=1000)
    check_option("--size", args.size, low=8, high=4096)
    check_option("--seed", args.seed, low=0)
    with writing_output(args.out, "make-synthetic"):
        try:
            paths = make_synthetic(
                args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, frames=args.frames, size=args.size,
                seed=args.seed, original=original,
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
        max_interval_s=args.max_sample_interval,
    )
    report["paths"] = {k: str(v) for k, v in report["paths"].items()}
    print(json.dumps(report, indent=2))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, parse_losses

    cfg = load_train_config(args.config, args.overrides, data=args.data)
    losses = parse_losses(args.losses) if args.losses else None
    ctx = init_distributed(args.device)
    result = compare(cfg, losses, args.out, ctx, seeds=args.seeds, skip_bad=args.skip_bad,
                     allow_data_mismatch=args.allow_data_mismatch, argv=sys.argv)
    if ctx.is_main:
        print(f"comparison of {len(result['results'])} loss(es): {result['outputs']['table_md']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device, config=args.config, overrides=args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-video-loss",
        description="SimVP video prediction on sparse frames (one active pixel per frame): which loss recovers the future positions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_make_synthetic_command(
        sub, description="Sequences with fixations (3-12 frames), saccades (5-14 px jumps) and smooth pursuit, seeded, "
        "in the real on-disk format (or the study's original format)."
    )
    p.add_argument("--n-train", type=int, default=1000, help="training sequences, at least 1 (default 1000)")
    p.add_argument("--n-val", type=int, default=200, help="validation sequences, at least 1 (default 200)")
    p.add_argument("--n-test", type=int, default=200, help="test sequences, at least 1 (default 200)")
    p.add_argument("--frames", type=int, default=20, help="frames per sequence (n_input + n_output), 2 to 1000 (default 20)")
    p.add_argument("--size", type=int, default=32, help="grid side in pixels, 8 to 4096 (default 32)")
    p.add_argument("--format", default="native", choices=["native", "original"],
                   help="native: train.pt/val.pt/test.pt; original: the study's train_data.pt/... with coordinates and fixation_mask")
    p.set_defaults(func=_cmd_make_synthetic)

    p = add_validate_data_command(
        sub, default_config=DEFAULT_CONFIG,
        path_help="a data directory (the split files of the config's data.format), one split file, or a CSV gaze trace",
    )
    _add_max_interval(p)
    p.set_defaults(func=_cmd_validate)

    p = add_train_command(sub, default_config=DEFAULT_CONFIG, data_help=DATA_HELP, help="train SimVP with one loss",
                          description="Train SimVP 10 -> 10 frames with the loss of the config. --weights PATH starts from "
                          "your own SimVP state dict (SimVP has no published pretrained weights).")
    p.set_defaults(func=_cmd_train)

    p = add_evaluate_command(
        sub, description="Choose the F1-best threshold on val, then write per-horizon metrics of the test split "
        "(metrics.json, per_horizon.csv, per_horizon.png, predictions.png) with blank and last-position baselines.",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = add_predict_command(
        sub, inputs_help="CSV gaze trace(s): sequence,t,x,y (seconds, screen pixels; the import-csv format)",
        help="predict the next frames' positions from gaze traces", out_default="predictions",
        out_help="output folder for positions.csv, strip.png and predictions.json",
    )
    p.add_argument("--screen-width", type=float, help="screen width in pixels (default: recorded by import-csv in the run's data)")
    p.add_argument("--screen-height", type=float, help="screen height in pixels (default: as recorded)")
    p.add_argument("--frame-rate", type=float, help="frames per second of the binning (default: the run's data, e.g. 25)")
    _add_max_interval(p)
    p.set_defaults(func=_cmd_predict)

    p = add_export_command(sub)
    p.set_defaults(func=_cmd_export)

    p = add_weights_command(sub)
    p.set_defaults(func=_cmd_weights)

    p = add_demo_command(sub, default_out="demo-out",
                         help="the whole pipeline on tiny synthetic data (toy settings, random init; about 2 min on 2 CPU cores)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "compare",
        help="train and evaluate several losses over several seeds with the same data and budget",
        description=f"Train one run per loss and seed (the config's compare.losses, or --losses all / a comma list of: "
        f"{', '.join(LOSSES)}), evaluate each, and write comparison.md/.csv/.json, per_horizon.csv/.png, per_seed.csv "
        "and prediction_grid.png (mean +- sd over seeds). Existing runs in OUT are resumed.",
    )
    add_config_args(p, DEFAULT_CONFIG)
    p.add_argument("--losses", default=None, help="'all' or a comma-separated list of loss names (default: the config's compare.losses)")
    p.add_argument("--seeds", type=int, default=None, help="runs per loss, seeds seed, seed+1, ... (default: compare.seeds)")
    p.add_argument("--out", required=True, help="output directory (runs/<loss>/seed_<seed>/ and the comparison files)")
    p.add_argument("--data", default=None, help=DATA_HELP)
    add_device_arg(p)
    add_skip_bad_arg(p)
    add_allow_data_mismatch_arg(p)
    p.set_defaults(func=_cmd_compare)

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
    add_skip_bad_arg(p)
    _add_max_interval(p)
    p.set_defaults(func=_cmd_import_csv)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
