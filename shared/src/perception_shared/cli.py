"""Command-line pieces every package's CLI shares: common training options and error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .distributed import shutdown
from .errors import UserError
from .logging import get_logger
from .preemption import PREEMPTED_EXIT_CODE, Preempted

USER_ERROR_EXIT_CODE = 2


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    parser.add_argument(
        "--config",
        default=default_config,
        help="YAML config: a path, or the name of one of this package's configs (e.g. baseline)"
        + (f"; default: {default_config}" if default_config else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.01 (repeatable; values are YAML)",
    )


def add_common_train_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """--config, --set, --output-dir, --run-dir, --resume, --auto-resume, --device, --skip-bad."""
    add_config_args(parser, default_config)
    parser.add_argument("--output-dir", default="outputs", help="parent of new run directories (default: outputs)")
    parser.add_argument("--run-dir", default=None, help="use exactly this run directory instead of a new timestamped one")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="continue a run: its directory or a checkpoint file; without a value, the run in --run-dir",
    )
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="resume if the run directory has a checkpoint, else start fresh (for requeued SLURM jobs)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad input files with a counted warning instead of failing")


@dataclass(frozen=True)
class ResumeSpec:
    """Where a run lives and whether (and from which file) it continues."""

    run_dir: Path | None
    resume: bool
    checkpoint: Path | None


def resolve_resume(args: argparse.Namespace) -> ResumeSpec:
    """Turn --run-dir/--resume/--auto-resume into a run directory and a resume decision."""
    from .checkpoint import CheckpointManager

    run_dir = Path(args.run_dir) if args.run_dir else None
    resume = args.resume
    if resume is not None and resume is not True:
        target = Path(resume)
        if target.is_file():
            return ResumeSpec(run_dir or target.parent, True, target)
        if target.is_dir():
            return ResumeSpec(target, True, None)
        raise UserError(f"--resume {target}: no such run directory or checkpoint file")
    if resume is True:
        if run_dir is None:
            raise UserError("--resume without a value needs --run-dir (or give the run directory to --resume)")
        if not run_dir.is_dir():
            raise UserError(f"--resume: run directory {run_dir} does not exist")
        return ResumeSpec(run_dir, True, None)
    if getattr(args, "auto_resume", False):
        if run_dir is None:
            raise UserError("--auto-resume needs --run-dir (a fixed directory that a requeued job finds again)")
        has = run_dir.is_dir() and bool(CheckpointManager(run_dir, enabled=False).candidates())
        return ResumeSpec(run_dir, has, None)
    return ResumeSpec(run_dir, False, None)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)``: user errors print one line and exit 2, preemption exits 75."""
    ok = False
    try:
        code = main(argv)
        ok = True
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except Preempted as e:
        get_logger().warning("%s", e)
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        try:
            shutdown(wait=ok)
        except Exception:  # the process group may already be broken; exiting matters more
            pass
    return int(code or 0)
