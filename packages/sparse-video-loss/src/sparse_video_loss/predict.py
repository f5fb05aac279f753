"""``predict --run RUN TRACE.csv``: where the gaze goes next, from a trace in the documented CSV format.

Each trace of the CSV (``sequence,t,x,y``, seconds and screen pixels, see ``importer``) is binned exactly
as ``import-csv`` bins training data (``importer.bin_trace``: ``frame_rate`` frames, screen -> grid); its
last ``n_input`` frames go into the run's model, and for each of the ``n_output`` future frames the
predicted position is the argmax pixel of ``p = sigmoid(logits)``. Written to ``--out``:

* ``positions.csv``: one row per trace and future frame: ``sequence``, ``horizon`` (1..n_output),
  ``t_start`` (seconds, the trace's clock: the predicted frame covers ``[t_start, t_start + 1/frame_rate)``),
  ``row``, ``col`` (grid pixel), ``x``, ``y`` (the pixel's centre in screen pixels), ``p_peak`` (its
  probability), ``peak_to_mean`` and ``collapsed`` (see ``metrics``: True when no pixel stands out, so the
  position means little);
* ``strip.png``: per trace, the last input frame and the predicted maps with the argmax marked;
* ``predictions.json``: the run, checkpoint, weights, screen and frame rate used, and skipped traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.cli import resolve_run
from perception_shared.errors import ConfigError, DataError
from perception_shared.figures import run_status, subtitle
from perception_shared.jsonio import json_ready, write_json
from perception_shared.logging import get_logger
from perception_shared.plotting import write_history_csv

from .data import load_split_data
from .evaluate import load_trained_model
from .importer import MAX_SAMPLE_INTERVAL_S, bin_trace, read_traces
from .metrics import argmax_pixels, collapsed, peak_to_mean
from .report import plot_prediction_strip
from .sequences import create_sparse_frames

log = get_logger("sparse_video_loss.predict")


def recorded_screen(cfg: Any) -> dict[str, float]:
    """Screen size and frame rate the run's training data recorded (``import-csv`` writes them), if any."""
    try:
        _, data = load_split_data(cfg.data, "train")
    except DataError:
        return {}
    meta = data.get("meta") or {}
    return {k: float(meta[k]) for k in ("screen_width", "screen_height", "frame_rate_hz") if isinstance(meta.get(k), (int, float))}


def predict_traces(
    run: str | Path,
    traces_csv: Sequence[str | Path],
    out_dir: str | Path,
    *,
    screen_width: float | None = None,
    screen_height: float | None = None,
    frame_rate: float | None = None,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    max_interval_s: float = MAX_SAMPLE_INTERVAL_S,
) -> dict[str, Any]:
    """Predict the next frames of every trace in ``traces_csv`` with the run's model; write the module's outputs."""
    ref = resolve_run(run)
    device = torch.device(device)
    model, cfg, state = load_trained_model(ref.checkpoint, device)
    recorded = recorded_screen(cfg)
    width = screen_width or recorded.get("screen_width")
    height = screen_height or recorded.get("screen_height")
    rate = frame_rate or recorded.get("frame_rate_hz")
    if width is None or height is None:
        raise ConfigError(
            f"predict: the run's training data ({cfg.data.root}) records no screen size; give --screen-width and "
            "--screen-height in pixels (the x and y ranges of the trace)"
        )
    if rate is None:
        raise ConfigError(f"predict: the run's training data ({cfg.data.root}) records no frame rate; give --frame-rate")
    T_in, _, size, _ = model.in_shape
    names: list[str] = []
    frames: list[torch.Tensor] = []
    last_t: list[float] = []
    skipped: list[str] = []
    for csv_path in traces_csv:
        traces, _ = read_traces(csv_path, max_interval_s=max_interval_s)
        for seq in sorted(traces):
            trace = traces[seq]
            coords, masks, off = bin_trace(trace, screen_width=width, screen_height=height, size=size, frame_rate=rate)
            if off:
                log.warning("%s, trace %s: %d sample(s) outside the %gx%g screen treated as missing", csv_path, seq, off, width, height)
            if len(masks) < T_in:
                skipped.append(f"{csv_path}: trace {seq!r} spans {len(masks)} frame(s) at {rate:g} Hz; the model needs {T_in}")
                continue
            c, m = torch.from_numpy(coords[-T_in:]).float(), torch.from_numpy(masks[-T_in:])
            frames.append(create_sparse_frames(torch.nan_to_num(c), m, size))
            names.append(f"{seq}" if len(traces_csv) == 1 else f"{Path(csv_path).name}:{seq}")
            last_t.append(float(trace[0, 0]) + len(masks) / rate)  # where the first predicted frame starts
    for s in skipped:
        log.warning("skipped %s", s)
    if not frames:
        raise DataError("predict: no trace is long enough to predict from: " + "; ".join(skipped))
    inputs = torch.stack(frames)
    bs = batch_size or cfg.data.eval_batch_size
    with torch.no_grad():
        probs = torch.cat([torch.sigmoid(model(inputs[i : i + bs].to(device)).float()).cpu() for i in range(0, len(inputs), bs)])
    probs_np = probs[:, :, 0].numpy()
    n, T_out = probs_np.shape[:2]
    flat = probs_np.reshape(n * T_out, size, size)
    peaks = argmax_pixels(flat).reshape(n, T_out, 2)
    ratios = peak_to_mean(flat).reshape(n, T_out)
    is_collapsed = collapsed(flat).reshape(n, T_out)
    rows = []
    for i, name in enumerate(names):
        for h in range(T_out):
            r, c = (int(v) for v in peaks[i, h])
            rows.append({
                "sequence": name,
                "horizon": h + 1,
                "t_start": last_t[i] + h / rate,
                "row": r,
                "col": c,
                "x": (c + 0.5) * width / size,
                "y": (r + 0.5) * height / size,
                "p_peak": float(probs_np[i, h, r, c]),
                "peak_to_mean": float(ratios[i, h]),
                "collapsed": bool(is_collapsed[i, h]),
            })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_out = write_history_csv(rows, out / "positions.csv")
    extra = state.get("extra") or {}
    weights = extra.get("weights")
    status = run_status(toy=bool(extra.get("toy", cfg.toy)), random_init=(weights or {}).get("kind") == "random")
    png = plot_prediction_strip(inputs[:, -1, 0].numpy(), probs_np, peaks, names, out / "strip.png",
                                sub=subtitle(ref.run_dir.name, status, Path(ref.checkpoint).name))
    info = json_ready({
        "run": str(ref.run_dir),
        "checkpoint": str(ref.checkpoint),
        "weights": weights,
        "traces": [str(p) for p in traces_csv],
        "screen": {"width": width, "height": height, "from": "arguments" if screen_width else "the run's training data"},
        "frame_rate_hz": rate,
        "grid": size,
        "n_input": T_in,
        "n_output": T_out,
        "predicted_sequences": names,
        "skipped": skipped,
        "collapsed_fraction": float(np.mean(is_collapsed)),
        "outputs": {"positions_csv": str(csv_out), "strip_png": str(png)},
    })
    write_json(out / "predictions.json", info)
    return info
