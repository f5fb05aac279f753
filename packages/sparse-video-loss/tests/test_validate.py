"""validate-data: every file read completely, every planted fault reported by file name, exit status."""

import json

import torch

from perception_shared.config import load_config, resolve_config_path
from sparse_video_loss.cli import main
from sparse_video_loss.config import OriginalFormatConfig, TrainConfig
from sparse_video_loss.sequences import load_sequences, save_sequences
from sparse_video_loss.synthetic import make_synthetic
from sparse_video_loss.validate import validate_data


def data_config(*overrides):
    return load_config(TrainConfig, resolve_config_path("sparse_video_loss", "demo"), list(overrides)).data


def test_a_clean_synthetic_set_passes_with_counts(tmp_path, capsys):
    make_synthetic(tmp_path, n_train=12, n_val=5, n_test=7, seed=1)
    report = validate_data(tmp_path, data_config())
    assert report.ok and report.sections["test"]["sequences"] == 7 and report.sections["val"]["usable_sequences"] == 5
    masks = load_sequences(tmp_path / "train.pt")["masks"]
    assert report.sections["train"]["frames_with_point"].startswith(f"{int(masks.sum())} of 240")
    assert sum(report.sections["train"]["motion"].values()) == 240
    assert main(["validate-data", str(tmp_path), "--config", "demo", "--json", str(tmp_path / "v.json")]) == 0
    written = json.loads((tmp_path / "v.json").read_text())
    assert written["ok"] is True and written["files"] == 3 and written["sections"]["test"]["sequences"] == 7
    assert "no problems found" in capsys.readouterr().out


def test_every_planted_fault_is_reported_by_file(tmp_path, capsys):
    make_synthetic(tmp_path, n_train=12, n_val=6, n_test=5, seed=2)
    val = load_sequences(tmp_path / "val.pt")
    coords, masks = val["coordinates"].clone(), val["masks"].clone()
    masks[2, 5] = masks[4, 9] = True
    coords[2, 5] = float("nan")
    coords[4, 9] = torch.tensor([40.0, 3.0])
    torch.save({**val, "coordinates": coords, "masks": masks}, tmp_path / "val.pt")  # bypasses save_sequences' checks
    blob = (tmp_path / "test.pt").read_bytes()
    (tmp_path / "test.pt").write_bytes(blob[: len(blob) // 2])
    report = validate_data(tmp_path, data_config())
    text = "\n".join(report.problems)
    assert "val.pt: field 'coordinates' of sequence 2, frame 5" in text and "is not finite" in text
    assert "val.pt: field 'coordinates' of sequence 4, frame 9 = (40, 3) is outside" in text
    assert "test.pt: cannot be read as a split file" in text and len(report.problems) == 3
    assert report.sections["val"]["usable_sequences"] == 4 and report.sections["val"]["sequences"] == 6
    assert report.sections["train"]["usable_sequences"] == 12
    assert main(["validate-data", str(tmp_path), "--config", "demo"]) == 1
    assert capsys.readouterr().out.count("PROBLEM") == 3


def test_frame_count_grid_and_original_key_mapping_faults(tmp_path):
    short = tmp_path / "short"
    make_synthetic(short, n_train=4, n_val=4, n_test=4, frames=18, seed=3)
    report = validate_data(short, data_config())
    assert sum("sequences have 18 frames; the config's n_input + n_output needs exactly 20" in p for p in report.problems) == 3
    grids = tmp_path / "grids"
    make_synthetic(grids, n_train=4, n_val=4, n_test=4, seed=3)
    d = load_sequences(grids / "test.pt")
    save_sequences(grids / "test.pt", d["coordinates"] / 2, d["masks"], 16)
    assert any("different grid sizes: train 32, val 32, test 16" in p for p in validate_data(grids, data_config()).problems)
    orig = tmp_path / "orig"
    make_synthetic(orig, n_train=4, n_val=4, n_test=4, seed=3, original=OriginalFormatConfig())
    raw = torch.load(orig / "val_data.pt", weights_only=True)
    torch.save({"coords": raw["coordinates"], "fixation_mask": raw["fixation_mask"]}, orig / "val_data.pt")
    report = validate_data(orig, data_config("data.format=original"))
    assert len(report.problems) == 1 and "val_data.pt: no key 'coordinates'" in report.problems[0]
    assert "'coords': a torch.float32 tensor of shape (4, 20, 2)" in report.problems[0]
    assert report.sections["train"]["usable_sequences"] == 4  # the other files are still read


def test_csv_traces_are_checked_row_by_row_and_for_their_time_unit(tmp_path):
    rows = [f"a,{5 + i / 100:.3f},{100 + i},200" for i in range(50)] + ["a,5.5,abc,200", "b,,3,4"]
    good = tmp_path / "trace.csv"
    good.write_text("sequence,t,x,y\n" + "\n".join(rows) + "\n")
    report = validate_data(good, data_config())
    assert [p.split(": ", 1)[0] for p in report.problems] == [f"{good}, line 52", f"{good}, line 53"]
    assert report.sections["trace.csv"]["samples"] == 50 and report.sections["trace.csv"]["median_interval_s"] == 0.01
    ms = tmp_path / "ms.csv"
    ms.write_text("sequence,t,x,y\n" + "\n".join(f"a,{5000 + 4 * i},{100 + i},200" for i in range(50)) + "\n")
    report = validate_data(ms, data_config())
    assert len(report.problems) == 1 and "column 't' must be in seconds" in report.problems[0] and "ms.csv" in report.problems[0]
