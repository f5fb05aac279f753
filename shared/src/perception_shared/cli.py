"""Command-line pieces every package's CLI shares: the common subcommands, their options, error handling.

Every package's console script has the same shape, so a user who knows one knows all four:

    make-synthetic OUT          synthetic data with known ground truth
    validate-data PATH          read a whole data set in its real format, report every problem
    train                       --config/--set/--data/--weights, run directory, resume, device
    evaluate RUN                a run directory (its best checkpoint) or a checkpoint file
    predict --run RUN INPUT...  the trained model on new inputs
    export RUN                  ONNX or TorchScript with dynamic batch, plus preprocessing JSON
    weights list|fetch|check    where pretrained backbone weights come from, and their hashes
    demo                        the whole pipeline on tiny synthetic data

The ``add_*_command`` builders define those subcommands and their common options once; each returns
its subparser so the package adds only what is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .distributed import shutdown
from .errors import UserError
from .logging import get_logger
from .preemption import PREEMPTED_EXIT_CODE, Preempted
from .runs import removing_unstarted_runs

USER_ERROR_EXIT_CODE = 2
RUN_HELP = "a run directory (uses its best_model.pth, else final_model.pth, else last.pth) or a checkpoint file"
RUN_CHECKPOINTS = ("best_model.pth", "final_model.pth", "last.pth")


def add_run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)


def package_config_names(parser: argparse.ArgumentParser) -> list[str]:
    """The names of the configs shipped with the package whose console script ``parser`` belongs to (its
    ``prog``, ``gaze-estimation train`` -> ``gaze_estimation``); empty for a parser of no such package."""
    from .config import packaged_config_dir

    module = parser.prog.split()[0].replace("-", "_")
    try:
        folder = packaged_config_dir(module)
    except (ImportError, TypeError):  # not an importable package (TypeError: a namespace without __file__)
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    names = package_config_names(parser)
    parser.add_argument(
        "--config",
        default=default_config,
        help="YAML config: a path, or the name of one of this package's configs"
        + (f" ({', '.join(names)})" if names else "")
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


def add_device_arg(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument(
        "--device", default=default, choices=["auto", "cpu", "cuda"], help=f"default: {default} (auto: cuda when available)"
    )


def add_skip_bad_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad", action="store_true", help="skip bad input files with a counted warning instead of failing")


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, help="default: the run's config")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the run's config)")


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
    add_device_arg(parser)
    add_skip_bad_arg(parser)


def _subparser(sub: argparse._SubParsersAction, name: str, help: str, description: str | None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".")


def add_train_command(
    sub: argparse._SubParsersAction,
    *,
    default_config: str | None = None,
    data_help: str = "data root (sets the config's data root)",
    help: str = "train a model; writes a run directory",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``train``: the common training options plus ``--data DIR``, ``--weights PATH`` and ``--seed N``."""
    p = _subparser(sub, "train", help, description)
    add_common_train_args(p, default_config)
    p.add_argument("--data", metavar="PATH", help=data_help)
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="a local file with the backbone's pretrained weights (instead of the hub/torch caches or a download)",
    )
    p.add_argument("--seed", type=int, help="overrides the config's seed")
    return p


def add_evaluate_command(
    sub: argparse._SubParsersAction,
    *,
    help: str = "evaluate a trained run; writes metrics JSON/CSV and figures",
    description: str | None = None,
    data_help: str = "evaluate on this data set instead of the run's own (same format)",
) -> argparse.ArgumentParser:
    """``evaluate RUN``: RUN is a run directory (its best checkpoint) or a checkpoint file."""
    p = _subparser(sub, "evaluate", help, description)
    add_run_arg(p)
    p.add_argument("--data", metavar="PATH", help=data_help)
    p.add_argument("--out", metavar="DIR", help="output folder (default: inside the run directory)")
    add_device_arg(p)
    add_loader_args(p)
    add_skip_bad_arg(p)
    add_allow_data_mismatch_arg(p)
    return p


def add_predict_command(
    sub: argparse._SubParsersAction,
    *,
    inputs_help: str,
    help: str = "run a trained model on new inputs",
    description: str | None = None,
    out_default: str | None = None,
    out_help: str = "output path",
    batch_size: bool = True,
) -> argparse.ArgumentParser:
    """``predict --run RUN INPUT...``; ``batch_size=False`` leaves ``--batch-size`` out (a package whose
    predict runs each input on its own, at its own size)."""
    p = _subparser(sub, "predict", help, description)
    p.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs_help)
    p.add_argument("--out", default=out_default, help=out_help + (f" (default: {out_default})" if out_default else ""))
    add_device_arg(p)
    if batch_size:
        p.add_argument("--batch-size", type=int, help="default: the run's config")
    return p


def add_export_command(
    sub: argparse._SubParsersAction,
    *,
    help: str = "export a trained model to ONNX or TorchScript (dynamic batch) with its preprocessing as JSON",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``export RUN --format onnx|torchscript --out PATH --opset N``."""
    p = _subparser(sub, "export", help, description)
    add_run_arg(p)
    p.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "torchscript"], help="default: onnx")
    p.add_argument("--out", metavar="PATH", help="output file (default: <run dir>/export/model.onnx or model.pt)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="skip comparing the exported model's outputs with PyTorch's"
    )
    return p


def add_validate_data_command(
    sub: argparse._SubParsersAction,
    *,
    path_help: str,
    default_config: str | None = None,
    help: str = "read a whole data set in its real format and report every problem (no training)",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``validate-data PATH``: exits 1 when a problem is found."""
    p = _subparser(sub, "validate-data", help, description)
    p.add_argument("path", metavar="PATH", help=path_help)
    add_config_args(p, default_config)
    p.add_argument("--json", metavar="FILE", help="also write the summary and problems as JSON")
    return p


def add_make_synthetic_command(
    sub: argparse._SubParsersAction,
    *,
    help: str = "write a synthetic data set with known ground truth in the real data's format",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``make-synthetic OUT --seed N``."""
    p = _subparser(sub, "make-synthetic", help, description)
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    return p


def check_option(option: str, value: float, *, low: float | None = None, high: float | None = None) -> None:
    """Raise a ``UserError`` naming ``option`` unless ``value`` is a finite number in ``[low, high]``."""
    inside = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if not inside:
        wanted = (
            f"between {_number(low)} and {_number(high)}" if low is not None and high is not None
            else f"at least {_number(low)}" if low is not None
            else f"at most {_number(high)}" if high is not None
            else "a finite number"
        )
        raise UserError(f"{option} must be {wanted}, got {_number(value)}")


def _number(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and float(v).is_integer() else f"{v:g}"


@contextlib.contextmanager
def writing_output(out: str | Path, what: str) -> Iterator[None]:
    """Turn what writing ``out`` can raise beyond a UserError into one line: the folder cannot be written
    (``OSError``: a file in the way, no permission, a full disk) or the request does not fit in memory."""
    try:
        yield
    except MemoryError:
        raise UserError(f"{what}: not enough memory for this request; ask for fewer or smaller items") from None
    except OSError as e:
        raise UserError(f"{what}: cannot write {out}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None


def add_demo_command(
    sub: argparse._SubParsersAction,
    *,
    default_out: str = "demo_output",
    help: str = "the whole pipeline on tiny synthetic data (CPU; toy settings, random init)",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``demo --out DIR --device D --config NAME --set K=V``."""
    p = _subparser(sub, "demo", help, description)
    p.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    add_device_arg(p, default="cpu")
    add_config_args(p, default_config="demo")
    return p


def add_weights_command(
    sub: argparse._SubParsersAction,
    *,
    help: str = "pretrained backbone weights: where they come from (list), fill the cache (fetch), verify hashes (check)",
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``weights list|fetch CONFIG|check [FILE...]`` (see ``perception_shared.pretrained``)."""
    from .pretrained import add_weights_subcommands

    p = _subparser(sub, "weights", help, description)
    add_weights_subcommands(p)
    return p


def add_allow_data_mismatch_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-data-mismatch",
        action="store_true",
        help="compare runs even though their manifests say they were trained on different data",
    )


@dataclass(frozen=True)
class RunRef:
    """A trained run: its directory and the checkpoint to use."""

    run_dir: Path
    checkpoint: Path


def resolve_run(target: str | Path, prefer: Sequence[str] = RUN_CHECKPOINTS) -> RunRef:
    """``RUN`` as the CLIs take it: a run directory (first of ``prefer`` found in it) or a checkpoint file."""
    path = Path(target)
    if path.is_file():
        return RunRef(path.parent, path)
    if path.is_dir():
        for name in prefer:
            if (path / name).is_file():
                return RunRef(path, path / name)
        raise UserError(f"run directory {path} holds no checkpoint ({', '.join(prefer)}); has its training finished?")
    raise UserError(f"RUN {path}: no such run directory or checkpoint file")


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
    """Call ``main(argv)``: user errors print one line and exit 2, preemption exits 75.

    A run directory that the command created and that holds no checkpoint or logged step when it fails
    (a wrong ``--data``, a config error found after the directory was made) is removed, and said so.
    """
    ok = False
    removed: list[Path] = []
    try:
        with removing_unstarted_runs() as removed:
            code = main(argv)
        ok = True
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        _say_removed(removed)
        return USER_ERROR_EXIT_CODE
    except Preempted as e:
        get_logger().warning("%s", e)
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _say_removed(removed)
        return 130
    except BaseException:
        _say_removed(removed)
        raise
    finally:
        try:
            shutdown(wait=ok)
        except Exception:  # the process group may already be broken; exiting matters more
            pass
    return int(code or 0)


def _say_removed(removed: Sequence[Path]) -> None:
    for run in removed:
        print(f"removed {run}: the run failed before its first step and held nothing to resume", file=sys.stderr)
