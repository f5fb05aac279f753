"""``convert-eve``: the EVE release (Park et al., ECCV 2020) into the training format of ``data.py``.

Three modules, one per concern: ``eve_layout`` finds and checks EVE's participant and stimulus folders (its
docstring describes the layout and what is read), ``eve_participant`` converts one participant into one
file and decides whether a file is a complete conversion, and this module plans a run and spreads the
participants over worker processes with one progress bar.

At EVE's size (about 3 million basler frames) conversion is parallel over participants (``workers``
processes, by default the CPUs this process may use) and resumable: a participant's file is renamed into
place only when complete and carries a completion marker (``eve_participant``); a rerun checks every
existing file and converts again those that are incomplete, or were made with other settings or from
changed source files; ``force`` converts all again. The worker processes import this module and the three
above, none of which imports torch itself.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from queue import Empty
from typing import Any

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import ConfigError, DataError
from perception_shared.logging import ROOT_LOGGER, close_logging, get_logger, progress

from .eve_layout import participant_folders
from .eve_participant import ConvertSettings, ParticipantJob, completion_problem, convert_participant, plan_participant

_log = get_logger("gaze_estimation.convert")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at most ``SLURM_CPUS_PER_TASK`` in a SLURM job."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    raw = os.environ.get("SLURM_CPUS_PER_TASK")
    if raw:
        try:
            cpus = min(cpus, int(raw))
        except ValueError:
            raise ConfigError(f"SLURM_CPUS_PER_TASK={raw!r} is not a number of CPUs") from None
    return max(cpus, 1)


_worker_queue: Any = None  # in a worker process: where its frame counts and log records go


def _init_worker(queue: Any) -> None:
    """A worker process sends its log records and frame counts to the parent, which shows them."""
    global _worker_queue
    _worker_queue = queue
    close_logging()
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(logging.handlers.QueueHandler(queue))


def _convert_in_worker(job: ParticipantJob) -> tuple[int | None, list[str]]:
    policy = BadInputPolicy(skip=job.skip_bad)
    return convert_participant(job, policy, _worker_queue.put), policy.skipped


def _drain(queue: Any, bar: Any) -> None:
    """Show what the workers sent: frame counts on the bar, log records through this process's handlers."""
    while True:
        try:
            item = queue.get_nowait()
        except Empty:
            return
        if isinstance(item, int):
            bar.update(item)
        else:
            logging.getLogger(item.name).handle(item)


def _done(job: ParticipantJob, samples: int | None) -> int | None:
    if samples is not None:
        _log.info("%s: %d samples -> %s", job.folder.name, samples, job.out_path)
    return samples


def _convert_in_pool(jobs: Sequence[ParticipantJob], workers: int, policy: BadInputPolicy, bar: Any) -> dict[Path, int | None]:
    # forkserver: workers do not inherit this process's threads or open HDF5/FFmpeg state, and import
    # this module (h5py, av) once, in the server, rather than once each
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    queue = ctx.Queue()
    results: dict[Path, int | None] = {}
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,))
    pending = {pool.submit(_convert_in_worker, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(queue, bar)
            for future in done:
                job = pending.pop(future)
                try:
                    samples, skipped = future.result()
                except BrokenProcessPool as e:
                    names = ", ".join(j.folder.name for j in (job, *pending.values()))
                    raise RuntimeError(
                        f"a convert-eve worker process died (killed, or out of memory?) while converting one of {names}; "
                        "complete participants are kept: run the same command again to convert the rest"
                    ) from e
                policy.skipped += skipped  # the worker has logged them
                results[job.folder] = _done(job, samples)
    except BaseException:
        running = [j.folder.name for f, j in pending.items() if not f.cancel() and not f.done()]
        if running:
            _log.warning("stopping: letting %s finish (a complete file is kept and skipped by a rerun)", ", ".join(running))
        pool.shutdown(wait=False, cancel_futures=True)
        while not all(f.done() for f in pending):
            wait(pending, timeout=0.5)
            _drain(queue, bar)
        raise
    finally:
        pool.shutdown(wait=True)
        _drain(queue, bar)
    return results


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")  # H5Writer's temporary name


def _plan(folders: Sequence[Path], dst: Path, settings: ConvertSettings, *, skip_bad: bool, force: bool) -> list[tuple[ParticipantJob, bool]]:
    """``(job, already complete)`` for every participant folder; removes temporary files left by interrupted runs."""
    plan = []
    for folder in folders:
        job = plan_participant(folder, dst, settings, skip_bad=skip_bad)
        tmp = _tmp_path(job.out_path)
        if tmp.exists():
            tmp.unlink()
            _log.info("%s: removed %s, left by an interrupted conversion", folder.name, tmp)
        complete = False
        if job.out_path.exists() and force:
            _log.info("%s: converting %s again (--force)", folder.name, job.out_path)
        elif job.out_path.exists():
            problem = completion_problem(job)
            complete = problem is None
            if complete:
                _log.info("%s: %s is complete (same settings and source files), skipped", folder.name, job.out_path)
            else:
                _log.warning("%s: converting again: %s %s", folder.name, job.out_path, problem)
        plan.append((job, complete))
    return plan


def convert_eve(
    src: str | Path,
    dst: str | Path,
    *,
    camera: str = "basler",
    splits: Sequence[str] = ("train", "val"),
    participants: Sequence[str] | None = None,
    every: int = 6,
    compression: str | None = None,
    skip_bad: bool = False,
    workers: int | None = None,
    force: bool = False,
) -> list[Path]:
    """Convert EVE participants under ``src`` into ``dst``; returns their complete files, in participant order.

    ``workers`` participants are converted at once, in that many processes (default: ``usable_cpus()``;
    1 converts in this process). A participant whose file is complete (``completion_problem``) is skipped
    unless ``force``; any other is converted (again).
    """
    if every < 1:
        raise DataError(f"--every must be at least 1, got {every}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    bad = [s for s in splits if s not in ("train", "val")]
    if bad:
        raise DataError(f"unknown EVE split(s) {', '.join(bad)}: only train and val have public labels")
    src, dst = Path(src), Path(dst)
    policy = BadInputPolicy(skip=skip_bad)
    plan = _plan(participant_folders(src, splits, participants), dst, ConvertSettings(camera, every, compression), skip_bad=skip_bad, force=force)
    jobs = [job for job, complete in plan if not complete]
    results: dict[Path, int | None] = {}
    if jobs:
        n_workers = min(workers or usable_cpus(), len(jobs))
        frames = sum(job.frames for job in jobs)
        _log.info("converting %d participant(s), %d frames, in %d process(es)", len(jobs), frames, n_workers)
        bar = progress(None, total=frames, unit="frame", desc="convert-eve", smoothing=0.05)
        try:
            if n_workers == 1:
                results = {job.folder: _done(job, convert_participant(job, policy, bar.update)) for job in jobs}
            else:
                results = _convert_in_pool(jobs, n_workers, policy, bar)
        finally:
            bar.close()
    written = [job.out_path for job, complete in plan if complete or results.get(job.folder) is not None]
    if not written:
        raise DataError(f"{src}: nothing converted ({policy.summary()})")
    _log.info(
        "%d participant(s) in %s: %d converted now, %d complete before; %s",
        len(written), dst, len(written) - (len(plan) - len(jobs)), len(plan) - len(jobs), policy.summary(),
    )
    return written
