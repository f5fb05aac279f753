import json

import numpy as np
import pytest
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from sparse_video_loss.cli import main
from sparse_video_loss.data import SparseVideoDataset
from sparse_video_loss.importer import bin_trace, import_csv
from sparse_video_loss.sequences import load_sequences


def test_bin_trace_means_samples_per_frame_and_maps_screen_to_grid():
    # 100 Hz samples, 25 Hz frames: 4 samples per frame; a 640x320 screen on a 32 grid: 20x10 screen px per pixel.
    t = np.arange(12) / 100
    x = np.array([0, 20, 40, 60, np.nan, np.nan, np.nan, np.nan, 639.9, 700, 630, 620], dtype=float)
    y = np.array([0, 0, 10, 10, 5, 5, 5, 5, 319.9, 10, 315, 300], dtype=float)
    coords, masks, off = bin_trace(np.c_[t, x, y], screen_width=640, screen_height=320, size=32, frame_rate=25)
    assert masks.tolist() == [True, False, True] and off == 1
    gx = np.array([0, 20, 40, 60]) * 32 / 640 - 0.5
    gy = np.array([0, 0, 10, 10]) * 32 / 320 - 0.5
    np.testing.assert_allclose(coords[0], [gx.mean(), gy.mean()])
    np.testing.assert_allclose(coords[2], [np.mean([639.9, 630, 620]) / 20 - 0.5, np.mean([319.9, 315, 300]) / 10 - 0.5])
    assert np.isnan(coords[1]).all()


def make_csv(path, n_seq=10, seconds=1.0, rate=100, split_column=False, seed=0, time_scale=1.0):
    rng = np.random.default_rng(seed)
    lines = ["trial,sequence,t,x,y" + (",split" if split_column else "")]
    for s in range(n_seq):
        x0, y0 = rng.uniform(0, 1024), rng.uniform(0, 768)
        for i in range(int(seconds * rate)):
            row = f"p{s // 3},seq{s},{(5 + i / rate) * time_scale:.4f},{x0:.2f},{y0:.2f}"
            if split_column:
                row += "," + ("train" if s < n_seq - 2 else "val" if s == n_seq - 2 else "test")
            lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_writes_loadable_splits_with_whole_sequences_per_split(tmp_path):
    csv = make_csv(tmp_path / "gaze.csv", n_seq=10, seconds=1.7)
    report = import_csv(csv, tmp_path / "out", screen_width=1024, screen_height=768, frames=20, frame_rate=25, fractions=(0.6, 0.2, 0.2))
    # 1.7 s at 25 Hz = 43 frames: two windows of 20 per sequence, the last 3 frames dropped.
    assert report["windows"] == {"train": 12, "val": 4, "test": 4} and report["sequences"] == 10
    seen = {}
    for split in ("train", "val", "test"):
        data = load_sequences(tmp_path / "out" / f"{split}.pt")
        assert data["coordinates"].shape[1:] == (20, 2) and data["masks"].all()
        for seq in data["meta"]["window_sequence"]:
            assert seen.setdefault(seq, split) == split
        assert data["meta"]["window_start_frame"][:2] == [0, 20]
        ds = SparseVideoDataset(tmp_path / "out" / f"{split}.pt", 10, 10)
        assert ds[0]["targets"].sum() == 10


def test_split_column_and_stride(tmp_path):
    csv = make_csv(tmp_path / "gaze.csv", n_seq=5, seconds=1.0, split_column=True)
    report = import_csv(csv, tmp_path / "out", screen_width=1024, screen_height=768, frames=20, stride=5)
    assert report["windows"] == {"train": 3 * 2, "val": 2, "test": 2}  # 25 frames: windows start at 0 and 5


def test_bad_rows_are_named_by_line_or_skipped(tmp_path):
    csv = make_csv(tmp_path / "gaze.csv", n_seq=6, seconds=1.0)
    lines = csv.read_text().splitlines()
    lines[7] = "p0,seq0,abc,1,2"
    lines[9] = "p0,seq0,5.5,left,2"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"gaze.csv, line 8: column 't' = 'abc' is not a number"):
        import_csv(csv, tmp_path / "out", screen_width=1024, screen_height=768, fractions=(0.5, 0.25, 0.25))
    policy = BadInputPolicy(skip=True)
    report = import_csv(csv, tmp_path / "out", screen_width=1024, screen_height=768, fractions=(0.5, 0.25, 0.25), policy=policy)
    assert report["skipped_rows"] == 2 and "line 10" in policy.skipped[1]


def test_structural_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("seq,time,x,y\na,0,1,2\n")
    with pytest.raises(DataError, match="missing column\\(s\\) sequence, t; .* found: seq, time, x, y"):
        import_csv(bad, tmp_path / "o", screen_width=10, screen_height=10)
    csv = make_csv(tmp_path / "few.csv", n_seq=2, seconds=1.0)
    with pytest.raises(DataError, match=r"split\(s\) .*would hold no window"):
        import_csv(csv, tmp_path / "o", screen_width=1024, screen_height=768)
    with pytest.raises(DataError, match="fractions"):
        import_csv(csv, tmp_path / "o", screen_width=1024, screen_height=768, fractions=(0.5, 0.5, 0.5))


def test_cli_import_csv(tmp_path, capsys):
    csv = make_csv(tmp_path / "gaze.csv", n_seq=10, seconds=0.9)
    code = main(["import-csv", str(csv), str(tmp_path / "out"), "--screen-width", "1024", "--screen-height", "768",
                 "--fractions", "0.6,0.2,0.2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows"]["train"] == 6
    assert torch.load(tmp_path / "out" / "train.pt", weights_only=True)["size"] == 32
    assert main(["import-csv", str(csv), str(tmp_path / "o2"), "--screen-width", "1024", "--screen-height", "768",
                 "--fractions", "a,b"]) == 2


def test_samples_at_exactly_the_frame_times_stay_in_their_frames(tmp_path):
    """A trace recorded at the frame rate, written with decimal times (0.04 * 25 is not exactly 1 in floats)."""
    from sparse_video_loss.importer import bin_trace

    n = 40
    trace = np.stack([np.round(np.arange(n) / 25.0, 6), np.full(n, 10.0), np.full(n, 10.0)], axis=1)
    coords, masks, _ = bin_trace(trace, screen_width=32, screen_height=32, size=32, frame_rate=25.0)
    assert masks.all() and len(masks) == n


@pytest.mark.parametrize("scale, unit, interval", [(1000.0, "milliseconds", "4"), (1e6, "microseconds", "4000")])
def test_a_trace_in_milliseconds_or_microseconds_is_refused_naming_column_and_interval(tmp_path, scale, unit, interval):
    csv = make_csv(tmp_path / "gaze.csv", n_seq=4, seconds=1.0, rate=250, time_scale=scale)
    with pytest.raises(DataError) as e:
        import_csv(csv, tmp_path / "out", screen_width=1024, screen_height=768)
    msg = str(e.value)
    assert "column 't' must be in seconds" in msg and f"median interval between samples is {interval} " in msg
    assert f"in {unit} it would be a 250 Hz trace" in msg and not (tmp_path / "out").exists()
    assert main(["import-csv", str(csv), str(tmp_path / "cli"), "--screen-width", "1024", "--screen-height", "768"]) == 2


def test_a_slow_trace_passes_when_the_limit_is_raised(tmp_path):
    csv = make_csv(tmp_path / "slow.csv", n_seq=10, seconds=60.0, rate=2)  # 2 Hz on purpose
    with pytest.raises(DataError, match="median interval between samples is 0.5 "):
        import_csv(csv, tmp_path / "a", screen_width=1024, screen_height=768, frame_rate=1, frames=4)
    report = import_csv(csv, tmp_path / "b", screen_width=1024, screen_height=768, frame_rate=1, frames=4, max_interval_s=1.0)
    assert sum(report["windows"].values()) > 0
