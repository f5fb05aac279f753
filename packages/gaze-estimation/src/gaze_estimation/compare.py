"""``compare RUN_A RUN_B``: is B's angular error lower than A's on the same frames, and by how much?

Both runs are evaluated (``evaluate``: the same metrics and files as on their own) on the same data:
the runs' own validation participants, or ``--data``. Runs whose manifests record different report
data (content hashes) are refused unless ``allow_data_mismatch``. The comparison is paired: each frame's
error under B minus its error under A, over the frames both predicted (a single-frame and a temporal run
predict every frame once, so these are all frames; a different set is an error).

Uncertainty comes from the participants, not the frames (frames of one person are far from
independent): the percentile bootstrap resamples participants with replacement and recomputes the
mean paired difference over their frames (``perception_shared.metrics.bootstrap_ci``). The verdict:
``B better`` when the whole interval is below 0, ``A better`` when above, else ``no difference`` at
that confidence. With fewer than 5 participants the interval is coarse, and the report says so.

Outputs in ``out_dir``: ``A/`` and ``B/`` (each run's evaluation), ``compare.json``,
``compare_per_participant.csv`` (``participant,n_frames,mean_a_deg,mean_b_deg,mean_diff_deg``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from perception_shared.cli import resolve_run
from perception_shared.distributed import DistContext
from perception_shared.errors import DataError
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger
from perception_shared.manifest import check_same_data, load_manifest
from perception_shared.metrics import bootstrap_ci

from .evaluate import REPORT_PREFIX, evaluate, write_csv

_log = get_logger("gaze_estimation.compare")
FEW_PARTICIPANTS = 5


def report_data(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest restricted to its report (validation) data entries; None without a manifest."""
    manifest = load_manifest(run_dir, missing_ok=True)
    if manifest is None:
        return None
    return {**manifest, "data": {k: v for k, v in (manifest.get("data") or {}).items() if k.startswith(REPORT_PREFIX)}}


def read_errors(predictions_csv: Path) -> dict[tuple[str, int], tuple[str, float]]:
    """``{(file, row): (participant, error_deg)}`` from an evaluation's ``predictions.csv``."""
    with open(predictions_csv, newline="", encoding="utf-8") as f:
        return {(r["file"], int(r["row"])): (r["participant"], float(r["error_deg"])) for r in csv.DictReader(f)}


def paired_differences(a: dict[tuple[str, int], tuple[str, float]], b: dict[tuple[str, int], tuple[str, float]]) -> dict[str, np.ndarray]:
    """Per participant, the ``(n, 2)`` errors (A, B) of the frames both runs predicted; a DataError if the frames differ."""
    if set(a) != set(b):
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        raise DataError(
            f"the runs predicted different frames ({only_a} only by A, {only_b} only by B): compare them on the same data "
            "(--data) with the same files"
        )
    out: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(a):
        out.setdefault(a[key][0], []).append((a[key][1], b[key][1]))
    return {p: np.asarray(v, dtype=np.float64) for p, v in out.items()}


def participant_bootstrap(per: dict[str, np.ndarray], confidence: float, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean paired difference (B - A, degrees) over all frames and its bootstrap interval over participants."""
    sums = np.array([float((e[:, 1] - e[:, 0]).sum()) for e in per.values()])
    counts = np.array([len(e) for e in per.values()], dtype=np.float64)

    def mean_difference(s: np.ndarray, n: np.ndarray) -> float:
        return float(s.sum() / n.sum())

    lo, hi = bootstrap_ci(mean_difference, sums, counts, n_boot=n_boot, confidence=confidence, seed=seed)
    return mean_difference(sums, counts), float(lo), float(hi)


def verdict(diff: float, lo: float, hi: float, confidence: float, n_participants: int) -> str:
    """One line: which run is better, by how much, with the interval, or that no difference is shown."""
    pct = f"{100 * confidence:g}%"
    span = f"B - A = {diff:+.3f} deg ({pct} CI [{lo:+.3f}, {hi:+.3f}] over {n_participants} participants)"
    if hi < 0:
        text = f"B better: {span}"
    elif lo > 0:
        text = f"A better: {span}"
    else:
        text = f"no difference at {pct} confidence: {span}"
    if n_participants < FEW_PARTICIPANTS:
        text += f"; only {n_participants} participants, so the interval is coarse"
    return text


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    ctx: DistContext,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    split: str | None = None,
    allow_data_mismatch: bool = False,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    batch_size: int | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate both runs on the same frames and compare them (see the module docstring); returns the report."""
    ref_a, ref_b = resolve_run(run_a), resolve_run(run_b)
    mismatch = check_same_data(
        {f"RUN_A {ref_a.run_dir}": report_data(ref_a.run_dir), f"RUN_B {ref_b.run_dir}": report_data(ref_b.run_dir)}, allow=allow_data_mismatch
    )
    out = Path(out_dir)
    metrics = {}
    for name, ref in (("A", ref_a), ("B", ref_b)):
        metrics[name] = evaluate(
            ref.checkpoint, ctx=ctx, out_dir=out / name, data_root=data_root, split=split, batch_size=batch_size,
            num_workers=num_workers, allow_data_mismatch=allow_data_mismatch, figure_samples=0, log_to_run=False,
        )
    per = paired_differences(read_errors(out / "A" / "predictions.csv"), read_errors(out / "B" / "predictions.csv"))
    diff, lo, hi = participant_bootstrap(per, confidence, n_boot, seed)
    line = verdict(diff, lo, hi, confidence, len(per))
    report = {
        "run_a": {"checkpoint": str(ref_a.checkpoint), "model": metrics["A"]["model"], "mean_angular_error_deg": metrics["A"]["mean_angular_error_deg"]},
        "run_b": {"checkpoint": str(ref_b.checkpoint), "model": metrics["B"]["model"], "mean_angular_error_deg": metrics["B"]["mean_angular_error_deg"]},
        "n_frames": int(sum(len(e) for e in per.values())),
        "participants": sorted(per),
        "mean_difference_deg": diff,
        "ci_low_deg": lo,
        "ci_high_deg": hi,
        "confidence": confidence,
        "n_boot": n_boot,
        "resampling": "participants (percentile bootstrap); the difference is B - A per frame, averaged over frames",
        "verdict": line,
        "data_mismatch_allowed": mismatch,
        "purpose": sorted({metrics["A"]["purpose_note"], metrics["B"]["purpose_note"]}),
        "error_by_position": {k: m["error_by_position"] for k, m in metrics.items() if "error_by_position" in m},
    }
    if ctx.is_main:
        write_json(out / "compare.json", report)
        write_csv(
            out / "compare_per_participant.csv", ["participant", "n_frames", "mean_a_deg", "mean_b_deg", "mean_diff_deg"],
            [[p, len(e), f"{e[:, 0].mean():.4f}", f"{e[:, 1].mean():.4f}", f"{(e[:, 1] - e[:, 0]).mean():.4f}"] for p, e in per.items()],
        )
        _log.info("%s; wrote %s", line, out / "compare.json")
    return report
