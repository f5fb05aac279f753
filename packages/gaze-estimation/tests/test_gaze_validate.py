"""``validate-data``: every file read in its real format, every problem reported by file, exit 1 on any."""

import json
import shutil

import h5py
import numpy as np
from test_gaze_convert import N, gaze_rows, write_step, write_video

from gaze_estimation.cli import main
from gaze_estimation.validate import validate_data


def test_synthetic_data_validates(synth_root, tmp_path, capsys):
    report = validate_data(synth_root)
    assert report.ok and report.kind == "training format" and report.files == 6
    assert report.sections["train"] == {"participants": 4, "samples": 128}
    assert report.sections["total"]["samples"] == 4 * 32 + 2 * 16 and report.sections["total"]["participants"] == 6
    assert main(["validate-data", str(synth_root), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "  train: participants 4, samples 128" in out
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["ok"] is True and written["files"] == 6 and written["sections"]["total"]["samples"] == 160


def test_planted_faults_are_each_reported_by_file(synth_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    files = {p.parent.name: p for p in root.glob("*/participant_*/frames_basler.h5")}
    with h5py.File(files["participant_train01"], "a") as f:
        f["gaze"][3] = [np.nan, 0.0]
    with h5py.File(files["participant_train02"], "a") as f:
        f["gaze"][5] = [20.0, 45.0]  # degrees written as radians
    with h5py.File(files["participant_val01"], "a") as f:
        f["leye"][7] = 0  # a black crop: a failed decode upstream
    with h5py.File(files["participant_val02"], "a") as f:
        del f["reye"]
    files["participant_train03"].write_bytes(b"truncated")
    report = validate_data(root)
    assert not report.ok and report.files == 6
    text = "\n".join(report.problems)
    for name, what in (
        ("participant_train01", "non-finite row"),
        ("participant_train02", "degrees instead of radians"),
        ("participant_val01", "'leye' has 1 crop(s) of one flat colour"),
        ("participant_val02", "missing dataset 'reye'"),
        ("participant_train03", "not a readable HDF5 file"),
    ):
        assert any(str(files[name]) in p and what in p for p in report.problems), (name, text)
    assert main(["validate-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{len(report.problems)} problem(s)" in out and out.count("PROBLEM ") == len(report.problems)
    assert str(files["participant_val02"]) in out


def test_raw_eve_is_validated_with_the_converters_checks(tmp_path):
    root = tmp_path / "eve"
    write_step(root / "train01" / "step007_image_MIT-i2277207572", gaze=gaze_rows(0), validity=np.ones(N, bool))
    write_step(root / "val01" / "step120_wikipedia_wikipedia-random", gaze=gaze_rows(1), validity=np.ones(N, bool))
    report = validate_data(root)
    assert report.ok and report.kind == "raw EVE" and report.sections["total"]["samples"] == 2 * N
    assert report.sections["train01"] == {"stimulus_folders": 1, "samples": N, "valid_labelled_frames": N}
    # one frame short in a face video, and labels in degrees in another folder
    short = root / "train01" / "step030_video_diem-harry-potter-6-trailer"
    write_step(short, gaze=gaze_rows(2), validity=np.ones(N, bool), face_frames=N - 1)
    wrong = root / "val01" / "step121_wikipedia_wikipedia-random"
    write_step(wrong, gaze=gaze_rows(3) * 100, validity=np.ones(N, bool))
    write_video(root / "val01" / "step120_wikipedia_wikipedia-random" / "basler_eyes.mp4", np.zeros((N, 30, 64, 3), np.uint8))
    report = validate_data(root)
    assert not report.ok
    assert any(str(short / "basler_face.mp4") in p and f"has {N - 1} frames" in p for p in report.problems)
    assert any(str(wrong / "basler.h5") in p and "degrees instead of radians" in p for p in report.problems)
    assert any("basler_eyes.mp4" in p and "two square eye patches" in p for p in report.problems)
