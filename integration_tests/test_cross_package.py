"""Packages exchange documented files, never imports: a gaze model's predictions become a screen gaze
trace (CSV) that sparse-video-loss imports as sparse frames."""

import csv
import math

import numpy as np
import pytest
import torch

from conftest import PACKAGES, run


@pytest.mark.slow
def test_gaze_predictions_become_sparse_video_sequences(tmp_path):
    gaze, sparse = PACKAGES["gaze-estimation"], PACKAGES["sparse-video-loss"]
    data = tmp_path / "gaze-data"
    run([gaze.script, "make-synthetic", data, "--train-participants", "3", "--val-participants", "3", "--samples", "40"])
    run_dir = tmp_path / "gaze-run"
    run([gaze.script, "train", *gaze.train_args(data), "--device", "cpu", "--run-dir", run_dir,
         "--set", "loop.epochs=1"], timeout=900)
    width, height, distance, fps = 1280.0, 800.0, 1500.0, 25.0
    traces = []
    for split, h5 in zip(("train", "val", "test"), sorted(data.glob("val*/participant_*/frames_*.h5"))):
        pred_csv, trace_csv = tmp_path / f"pred-{split}.csv", tmp_path / f"trace-{split}.csv"
        run([gaze.script, "predict", "--run", run_dir, h5, "--out", pred_csv, "--device", "cpu",
             "--trace-csv", trace_csv, "--screen-px", width, height, "--distance-px", distance, "--fps", fps])
        # the trace's sequence names come from the files; make them unique and assign a split each
        rows = [dict(r, sequence=f"{split}-{r['sequence']}", split=split) for r in csv.DictReader(open(trace_csv))]
        preds = list(csv.DictReader(open(pred_csv)))
        traces.append((split, rows, preds))
    merged = tmp_path / "traces.csv"
    with open(merged, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sequence", "t", "x", "y", "split"])
        w.writeheader()
        for _, rows, _ in traces:
            w.writerows(rows)
    out = tmp_path / "sparse-data"
    run([sparse.script, "import-csv", merged, out, "--screen-width", width, "--screen-height", height,
         "--frame-rate", fps, "--frames", "20"])
    size = 32
    for split, _, preds in traces:
        blob = torch.load(out / f"{split}.pt", weights_only=True)
        coords, masks = blob["coordinates"].numpy(), blob["masks"].numpy()
        assert coords.shape == (2, 20, 2) and masks.shape == (2, 20)  # 40 samples at 25 Hz -> two 20-frame windows
        # independently: gaze direction -> screen point -> grid coordinate, sample k in frame k
        pitch = np.array([float(p["pitch"]) for p in preds])
        yaw = np.array([float(p["yaw"]) for p in preds])
        sx = width / 2 + distance * np.tan(yaw)
        sy = height / 2 - distance * np.tan(pitch) / np.cos(yaw)
        on_screen = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
        expected = np.stack([sx * size / width - 0.5, sy * size / height - 0.5], axis=1)
        got = coords.reshape(40, 2)
        valid = masks.reshape(40)
        assert np.array_equal(valid, on_screen)
        assert valid.sum() > 20, "most synthetic gaze should land on the screen"
        np.testing.assert_allclose(got[valid], expected[valid], atol=1e-3)
        assert not math.isnan(float(blob["coordinates"][blob["masks"]].sum()))
