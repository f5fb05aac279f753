"""Run directories: one name on every rank, checked for writability and free space before any work."""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from pathlib import Path

from .distributed import barrier, broadcast_object, is_main_process
from .errors import RunDirError

MIN_FREE_MB_ENV = "PERCEPTION_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 200


def timestamped_name(prefix: str = "run") -> str:
    return f"{prefix}_{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}"


def check_writable_dir(path: str | Path, min_free_mb: float | None = None) -> Path:
    """Create ``path`` if needed and prove it is writable with enough free space, or raise RunDirError.

    The free-space floor is ``min_free_mb`` or ``$PERCEPTION_MIN_FREE_MB`` (default 200 MB): a run
    that can write its first checkpoint but not its tenth should fail now, not after hours.
    """
    p = Path(path)
    if min_free_mb is None:
        min_free_mb = float(os.environ.get(MIN_FREE_MB_ENV, DEFAULT_MIN_FREE_MB))
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output directory {p}: {e.strerror or e}") from None
    probe = p / f".write-test-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunDirError(f"output directory {p} is not writable: {e.strerror or e}") from None
    finally:
        probe.unlink(missing_ok=True)
    free_mb = shutil.disk_usage(p).free / 2**20
    if free_mb < min_free_mb:
        raise RunDirError(
            f"output directory {p} has {free_mb:.0f} MB free, less than the {min_free_mb:.0f} MB needed "
            f"(set {MIN_FREE_MB_ENV} to change the floor)"
        )
    return p


def prepare_run_dir(output_dir: str | Path = "outputs", run_dir: str | Path | None = None, prefix: str = "run") -> Path:
    """The run directory: ``run_dir`` if given, else ``output_dir/run_YYYYMMDD_HHMMSS`` (made unique).

    Rank 0 picks the name and checks the directory; every rank gets the same path (a collective).
    """
    error: str | None = None
    chosen: str | None = None
    if is_main_process():
        try:
            if run_dir is not None:
                target = Path(run_dir)
            else:
                base = Path(output_dir)
                name = timestamped_name(prefix)
                target = base / name
                i = 1
                while target.exists():
                    target = base / f"{name}_{i}"
                    i += 1
            check_writable_dir(target)
            chosen = str(target)
        except RunDirError as e:
            error = str(e)
    chosen, error = broadcast_object((chosen, error))
    if error is not None:
        raise RunDirError(error)
    barrier()
    return Path(chosen)  # type: ignore[arg-type]
