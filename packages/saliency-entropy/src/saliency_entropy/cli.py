"""``saliency-entropy``: the common subcommands (``perception_shared.cli``) plus the package's own.

make-synthetic, validate-data, train, evaluate RUN, predict --run RUN, export RUN, weights, demo, and
report, study, extract-fixations, import-deepgaze. The CLI only parses arguments and calls the functions the tests call.
"""

from __future__ import annotations

import argparse
import csv
import json
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
    resolve_resume,
    run_cli,
)
from perception_shared.config import load_config, packaged_config_dir, resolve_config_path
from perception_shared.distributed import init_distributed, is_main_process
from perception_shared.logging import setup_logging

from . import __version__
from .config import TrainConfig

PACKAGE = "saliency_entropy"
DESCRIPTION = """Entropy-regularized DeepGaze-style saliency on MIT1003 (in-domain) and CAT2000 (out-of-domain).
Typical use: study --seeds 3 (baseline and entropy_reg per seed, evaluated, one go/no-go report), or
train --config baseline / entropy_reg, evaluate both runs, then report."""
DATA_HELP = "MIT1003 root folder (ALLSTIMULI/, DATA/; sets data.mit_root)"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliency-entropy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_make_synthetic_command(
        sub,
        description="Writes OUT/MIT1003 (ALLSTIMULI, DATA/<subject>/*.mat raw gaze, fixations.csv, GROUND_TRUTH) "
        "and OUT/CAT2000 (Stimuli, FIXATIONLOCS, GROUND_TRUTH) with known fixation densities.",
    )
    p.add_argument("--mit-images", type=int, default=24, help="MIT1003-like images (default 24)")
    p.add_argument("--subjects", type=int, default=6, help="MIT1003-like subjects (default 6)")
    p.add_argument("--cat-per-category", type=int, default=5, help="CAT2000-like images per category (default 5)")
    p.add_argument(
        "--scanpaths",
        action="store_true",
        help="MIT1003-like scanpaths with a preferred saccade length (known conditional density; images without "
        "content) for training and checking DeepGaze III's scanpath model",
    )

    add_validate_data_command(
        sub,
        path_help="an MIT1003 root, a CAT2000 train set, or a folder holding MIT1003/ and CAT2000/",
        default_config="baseline",
        description="Open and decode every file of MIT1003 / CAT2000 with the loaders' own checks; print a summary "
        "and every problem by file; exit 1 when there is a problem.",
    )

    p = add_train_command(
        sub,
        default_config="baseline",
        data_help=DATA_HELP,
        description="Train on the MIT1003 train split; validate on its val split every epoch. Works under torchrun.",
    )
    p.add_argument("--cat2000", help="CAT2000 train-set root (sets data.cat2000_root, used by evaluate)")
    p.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from this run's model and weights (a trained run or one written by import-deepgaze); "
        "its model section replaces the config's",
    )

    p = add_evaluate_command(
        sub,
        description="Metrics JSON, per-image CSV, manifest, bias map and example PNGs in RUN/evaluation (or --out). "
        "Works under torchrun.",
        data_help="MIT1003 root (default: the run's data.mit_root; other files than the run's are refused)",
    )
    p.add_argument("--cat2000", help="CAT2000 train-set root (default: the run's data.cat2000_root)")
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=["mit1003_val", "cat2000"],
        help="data sets to evaluate (default: the run's eval config: both)",
    )

    p = add_predict_command(
        sub,
        inputs_help="image files or folders of images, any size and aspect ratio",
        out_default="predictions",
        out_help="output folder: <stem>_log_density.npy, <stem>_saliency.png, predictions.csv",
        description="The run's saliency for any images: a log-density over each image's own pixels (.npy, "
        "summing to 1 in probability) and a heat-map overlay PNG. Images run one at a time, each at its own size.",
        batch_size=False,
    )
    p.add_argument(
        "--centerbias",
        metavar="FILE.npy",
        help="a log-density template (e.g. DeepGaze's centerbias_mit1003.npy), resized with nearest interpolation "
        "to each image and renormalized; default: the run's center prior",
    )
    p.add_argument(
        "--fixations",
        metavar="FILE.csv",
        help="scanpath models: columns image,x,y, each image's previous fixations in its pixels, most recent last "
        "(images without rows: one central fixation)",
    )
    p.add_argument(
        "--scale",
        choices=["run", "native"],
        default="run",
        help="run: the run's training scale (longer side of data.image_size); native: the image as given",
    )

    p = add_export_command(
        sub,
        description="ONNX or TorchScript with inputs image (B, 3, H, W) in [0, 1] and centerbias (B, H/4, W/4) "
        "log-probabilities, output the log-density (B, H, W); dynamic batch, spatial size fixed at export.",
    )
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size (default: the run's data.image_size)")

    add_weights_command(sub)

    p = sub.add_parser(
        "import-deepgaze",
        help="a deepgaze_pytorch state dict (the published deepgaze3.pth) as a run directory of this package",
        description="Reads FILE (weights_only), infers the architecture from its keys (mixture components, scanpath "
        "networks), fits the run's center prior on the config's MIT1003 training split as train does, and writes a run "
        "directory that evaluate, report, predict, export and train --init-from accept.",
    )
    p.add_argument("file", metavar="FILE", help="deepgaze_pytorch state dict (.pth)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--cat2000", help="CAT2000 train-set root (sets data.cat2000_root, used by evaluate)")
    p.add_argument("--downsample", type=float, default=2.0, help="default 2 (the spatial stage of the training notebook: 1.5)")
    p.add_argument("--readout-factor", type=int, default=4, help="default 4")
    p.add_argument("--saliency-map-factor", type=int, default=4, help="default 4")
    add_config_args(p, default_config="baseline")
    add_skip_bad_arg(p)

    p = add_demo_command(
        sub,
        description="make-synthetic -> train baseline and entropy_reg (configs/demo.yaml, TOY settings, random "
        "init) -> evaluate -> report -> predict -> export; writes OUT/summary.json and prints its wall time.",
    )

    p = sub.add_parser(
        "report",
        help="go/no-go report comparing baseline and entropy-regularized runs (one pair per seed)",
        description="Markdown + JSON + CSV + PNGs in the first ENTROPY_RUN/report (or --out). Every run must be "
        "evaluated first; runs that differ in more than the regularizer (and the seed between pairs) are refused. "
        "Thresholds come from the criteria section of --config (default: the first ENTROPY_RUN/config.yaml).",
    )
    p.add_argument("runs", nargs="+", metavar="BASELINE_RUN ENTROPY_RUN", help="pairs: baseline run, entropy run, ...")
    p.add_argument("--out", help="output folder (default: ENTROPY_RUN/report)")
    p.add_argument(
        "--reference",
        metavar="RUN",
        help="an evaluated reference run (e.g. import-deepgaze's published DeepGaze III): its IG and bias-map entropy "
        "beside the pairs, the runs' bias entropy read against it",
    )
    add_config_args(p)
    add_allow_data_mismatch_arg(p)

    p = sub.add_parser(
        "study",
        help="baseline and entropy_reg over K seeds, all evaluated, one report with intervals and spread",
        description="For seeds S..S+K-1: train OUT/seed_<s>/baseline and OUT/seed_<s>/entropy_reg (configs baseline "
        "and entropy_reg, seed s), evaluate both, then OUT/report (mean +- sd over seeds, per-seed table). Finished "
        "runs are reused, so an interrupted study continues. slurm/study.sbatch runs one array task per run.",
    )
    p.add_argument("--seeds", type=int, required=True, help="number of seeds K")
    p.add_argument("--first-seed", type=int, default=0, help="default 0")
    p.add_argument("--out", required=True, help="study folder")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--cat2000", help="CAT2000 train-set root (sets data.cat2000_root)")
    p.add_argument("--weights", metavar="PATH", help="a local file with the backbone's pretrained weights")
    p.add_argument("--baseline-config", default="baseline", help="default: baseline")
    p.add_argument("--entropy-config", default="entropy_reg", help="default: entropy_reg")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="for both arms")
    p.add_argument("--report-only", action="store_true", help="only aggregate runs already trained and evaluated")
    add_device_arg(p)
    add_skip_bad_arg(p)
    add_allow_data_mismatch_arg(p)

    p = sub.add_parser(
        "extract-fixations",
        help="MIT1003 raw eye data -> fixations CSV (pure-Python checkFixations)",
        description="Reads ROOT/ALLSTIMULI and ROOT/DATA/<subject>/<image>.mat; writes x,y,image,subject.",
    )
    p.add_argument("root", help="MIT1003 root folder")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--keep-first", action="store_true", help="keep each scanpath's first (forced central) fixation")
    add_skip_bad_arg(p)
    return parser


def shipped_configs() -> dict[str, TrainConfig]:
    """Every config the package ships, by name."""
    return {
        path.stem: load_config(TrainConfig, path)
        for path in sorted(packaged_config_dir(PACKAGE).glob("*.yaml"))
    }


def _main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "train":
        from .train import run_training

        result = run_training(
            args.config,
            args.overrides,
            output_dir=args.output_dir,
            resume_spec=resolve_resume(args),
            device=args.device,
            skip_bad=args.skip_bad,
            data=args.data,
            cat2000=args.cat2000,
            weights=args.weights,
            seed=args.seed,
            init_from=args.init_from,
        )
        if is_main_process():
            print(
                f"run {result.run_dir}: {result.epochs_completed} epochs, best val/nll {result.best_metric} (epoch {result.best_epoch})"
            )
    elif args.command == "evaluate":
        from perception_shared.cli import resolve_run

        from .evaluate import evaluate_run

        ctx = init_distributed(args.device)
        out = Path(args.out) if args.out else resolve_run(args.run).run_dir / "evaluation"
        setup_logging(out if ctx.is_main else None, filename="evaluate.log")
        result = evaluate_run(
            args.run,
            ctx,
            out_dir=out,
            mit_root=args.data,
            cat2000_root=args.cat2000,
            skip_bad=args.skip_bad,
            datasets=args.datasets,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            allow_data_mismatch=args.allow_data_mismatch,
        )
        if ctx.is_main:
            print(f"weights: {result['weights_description']}; images: {result['aspect_description']}")
            for name, d in result["datasets"].items():
                print(
                    f"{name}: {d['n_samples']} images, {d['n_fixations']} fixations, IG {d['ig']:.4f} bits/fix, NSS {d['nss']:.3f}, AUC-Judd {d['auc_judd']:.4f}"
                )
            print(f"bias map entropy {result['bias_map']['entropy_nats']:.4f} nats; written to {out}")
    elif args.command == "report":
        from perception_shared.errors import UserError

        from .report import make_report

        if len(args.runs) % 2:
            raise UserError(f"report takes runs in pairs (baseline, entropy); got {len(args.runs)} run(s)")
        report = make_report(
            args.runs[0::2],
            args.runs[1::2],
            out_dir=args.out,
            config=args.config,
            overrides=args.overrides,
            allow_data_mismatch=args.allow_data_mismatch,
            reference=args.reference,
        )
        out = Path(args.out) if args.out else Path(args.runs[1]) / "report"
        _print_verdict(report)
        print(f"report written to {out / 'report.md'}")
    elif args.command == "study":
        from .study import run_study

        ctx = init_distributed(args.device)
        setup_logging(Path(args.out) if ctx.is_main else None, filename="study.log")
        report = run_study(
            args.out,
            list(range(args.first_seed, args.first_seed + args.seeds)),
            ctx,
            configs={"baseline": args.baseline_config, "entropy_reg": args.entropy_config},
            overrides=args.overrides,
            data=args.data,
            cat2000=args.cat2000,
            weights=args.weights,
            skip_bad=args.skip_bad,
            report_only=args.report_only,
            allow_data_mismatch=args.allow_data_mismatch,
        )
        if ctx.is_main:
            _print_verdict(report)
            print(f"report written to {Path(args.out) / 'report' / 'report.md'}")
    elif args.command == "predict":
        from .predict import predict_images

        results = predict_images(
            args.run,
            args.inputs,
            args.out,
            device=args.device,
            centerbias=args.centerbias,
            fixations=args.fixations,
            scale=args.scale,
        )
        print(f"{len(results)} image(s): log-densities and overlays in {args.out} (predictions.csv lists them)")
    elif args.command == "import-deepgaze":
        from .import_deepgaze import import_deepgaze

        setup_logging(None)
        run_dir = import_deepgaze(
            args.file,
            args.out,
            config=args.config,
            overrides=args.overrides,
            data=args.data,
            cat2000=args.cat2000,
            downsample=args.downsample,
            readout_factor=args.readout_factor,
            saliency_map_factor=args.saliency_map_factor,
            skip_bad=args.skip_bad,
        )
        print(f"run {run_dir}: imported from {args.file}")
    elif args.command == "export":
        from .export import export_run

        result = export_run(args.run, fmt=args.fmt, out=args.out, opset=args.opset, size=args.size, check=args.check)
        print(json.dumps(result, indent=1))
    elif args.command == "validate-data":
        from perception_shared.validation import report_and_exit

        from .validate import validate_data

        setup_logging(None)
        cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, args.config), args.overrides)
        return report_and_exit(validate_data(args.path, cfg), args.json)
    elif args.command == "weights":
        from perception_shared.pretrained import WeightsRequest, weights_command

        from .train import weights_manifest_path

        requests = {
            name: [WeightsRequest(c.model.backbone, c.model.pretrained, c.model.weights_file)]
            for name, c in shipped_configs().items()
        }
        return weights_command(args, package="saliency-entropy", requests=requests, manifest_path=weights_manifest_path())
    elif args.command == "make-synthetic":
        from .synthetic import DomainSpec, SaccadeSpec, SyntheticSpec, make_synthetic

        spec = SyntheticSpec(
            seed=args.seed,
            mit_images=args.mit_images,
            cat_per_category=args.cat_per_category,
            saccades=SaccadeSpec() if args.scanpaths else None,
        )
        spec.mit = DomainSpec(**{**spec.mit.__dict__, "subjects": args.subjects})
        summary = make_synthetic(args.out, spec)
        print(json.dumps({k: v for k, v in summary.items() if k != "spec"}))
    elif args.command == "extract-fixations":
        from .data import mit1003_records

        setup_logging(None)
        policy = BadInputPolicy(skip=args.skip_bad)
        records = mit1003_records(args.root, fixations="raw", drop_first_fixation=not args.keep_first, policy=policy)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["x", "y", "image", "subject"])
            for r in records:
                for (x, y), subject in zip(r.fixations, r.subjects or [""] * len(r.fixations)):
                    w.writerow([f"{x:.3f}", f"{y:.3f}", r.image_path.name, subject])
        print(
            f"{sum(len(r.fixations) for r in records)} fixations on {len(records)} images written to {args.out}; {policy.summary()}"
        )
    elif args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, device=args.device, config=args.config, overrides=tuple(args.overrides))
    return 0


def _print_verdict(report: dict) -> None:
    print(
        f"verdict {report['verdict']}: "
        + "; ".join(f"{c['name']} {c['decision']}" for c in report["criteria"])
        + (" (RANDOM INIT backbone)" if report.get("random_init") else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)
