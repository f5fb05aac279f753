"""``saliency-entropy``: train, evaluate, report, make-synthetic, extract-fixations, demo."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

from perception_shared.badinput import BadInputPolicy
from perception_shared.cli import add_common_train_args, add_config_args, resolve_resume, run_cli
from perception_shared.distributed import init_distributed, is_main_process
from perception_shared.logging import setup_logging

from . import __version__

DESCRIPTION = """Entropy-regularized DeepGaze-style saliency on MIT1003 (in-domain) and CAT2000 (out-of-domain).
Typical use: train --config baseline and --config entropy_reg, evaluate both runs, then report."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliency-entropy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a saliency model (baseline or entropy-regularized)",
        description="Train on the MIT1003 train split; validate on its val split every epoch. Works under torchrun.",
    )
    add_common_train_args(p, default_config="baseline")
    p.add_argument("--data", help="MIT1003 root folder (overrides data.mit_root)")
    p.add_argument("--cat2000", help="CAT2000 train-set root (overrides data.cat2000_root, used by evaluate)")

    p = sub.add_parser(
        "evaluate",
        help="evaluate a run on MIT1003 val and CAT2000",
        description="Metrics JSON, per-image CSV, bias map and example PNGs in RUN/evaluation (or --out). Works under torchrun.",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--checkpoint", help="checkpoint file (default: RUN/best_model.pth)")
    p.add_argument("--out", help="output folder (default: RUN/evaluation)")
    p.add_argument("--data", help="MIT1003 root folder (default: the run's data.mit_root)")
    p.add_argument("--cat2000", help="CAT2000 train-set root (default: the run's data.cat2000_root)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad", action="store_true", help="skip bad input files with a counted warning")
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=["mit1003_val", "cat2000"],
        help="data sets to evaluate (default: the run's eval config: both)",
    )

    p = sub.add_parser(
        "report",
        help="go/no-go report comparing a baseline and an entropy-regularized run",
        description="Markdown + JSON + PNGs in ENTROPY_RUN/report (or --out). Both runs must be evaluated first. "
        "Thresholds come from the criteria section of --config (default: ENTROPY_RUN/config.yaml).",
    )
    p.add_argument("baseline_run")
    p.add_argument("entropy_run")
    p.add_argument("--out", help="output folder (default: ENTROPY_RUN/report)")
    add_config_args(p)

    p = sub.add_parser(
        "make-synthetic",
        help="write synthetic MIT1003-like and CAT2000-like data with known fixation densities",
        description="Writes OUT/MIT1003 (ALLSTIMULI, DATA/<subject>/*.mat raw gaze, fixations.csv, GROUND_TRUTH) "
        "and OUT/CAT2000 (Stimuli, FIXATIONLOCS, GROUND_TRUTH).",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mit-images", type=int, default=24, help="MIT1003-like images (default 24)")
    p.add_argument("--subjects", type=int, default=6, help="MIT1003-like subjects (default 6)")
    p.add_argument("--cat-per-category", type=int, default=5, help="CAT2000-like images per category (default 5)")

    p = sub.add_parser(
        "extract-fixations",
        help="MIT1003 raw eye data -> fixations CSV (pure-Python checkFixations)",
        description="Reads ROOT/ALLSTIMULI and ROOT/DATA/<subject>/<image>.mat; writes x,y,image,subject.",
    )
    p.add_argument("root", help="MIT1003 root folder")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--keep-first", action="store_true", help="keep each scanpath's first (forced central) fixation")
    p.add_argument("--skip-bad", action="store_true", help="skip bad input files with a counted warning")

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on synthetic data at tiny size (CPU, about 2 minutes)",
        description="make-synthetic -> train baseline and entropy_reg (configs/demo.yaml) -> evaluate -> report; writes OUT/summary.json.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        )
        if is_main_process():
            print(
                f"run {result.run_dir}: {result.epochs_completed} epochs, best val/nll {result.best_metric} (epoch {result.best_epoch})"
            )
    elif args.command == "evaluate":
        from .evaluate import evaluate_run

        ctx = init_distributed(args.device)
        out = Path(args.out) if args.out else Path(args.run) / "evaluation"
        setup_logging(out if ctx.is_main else None, filename="evaluate.log")
        result = evaluate_run(
            args.run,
            ctx,
            checkpoint=args.checkpoint,
            out_dir=out,
            mit_root=args.data,
            cat2000_root=args.cat2000,
            skip_bad=args.skip_bad,
            datasets=args.datasets,
        )
        if ctx.is_main:
            for name, d in result["datasets"].items():
                print(
                    f"{name}: {d['n_samples']} images, {d['n_fixations']} fixations, IG {d['ig']:.4f} bits/fix, NSS {d['nss']:.3f}, AUC-Judd {d['auc_judd']:.4f}"
                )
            print(f"bias map entropy {result['bias_map']['entropy_nats']:.4f} nats; written to {out}")
    elif args.command == "report":
        from .report import make_report

        report = make_report(
            args.baseline_run, args.entropy_run, out_dir=args.out, config=args.config, overrides=args.overrides
        )
        out = Path(args.out) if args.out else Path(args.entropy_run) / "report"
        print(
            f"verdict {report['verdict']}: "
            + "; ".join(f"{c['name']} {'pass' if c['passed'] else 'FAIL'}" for c in report["criteria"])
        )
        print(f"report written to {out / 'report.md'}")
    elif args.command == "make-synthetic":
        from .synthetic import DomainSpec, SyntheticSpec, make_synthetic

        spec = SyntheticSpec(seed=args.seed, mit_images=args.mit_images, cat_per_category=args.cat_per_category)
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

        run_demo(args.out, device=args.device)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)
