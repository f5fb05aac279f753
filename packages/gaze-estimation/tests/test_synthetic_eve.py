"""The raw-EVE synthetic generator against ``convert-eve``: labels, images, eye sides, calibration step."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from gaze_estimation.cli import main
from gaze_estimation.convert import convert_eve
from gaze_estimation.eve_layout import LABEL_GROUP
from gaze_estimation.synthetic import render_sample
from gaze_estimation.synthetic_eve import CALIBRATION_STEP, make_synthetic_eve, participant_truth
from perception_shared.errors import ConfigError

SEED, STEPS, FRAMES, EVERY = 3, 2, 8, 2
FACE, EYE = 128, 64  # small patches (the release's are 256 and 128); convert-eve resizes to 224 and 112
PARTICIPANTS = (("train", 0), ("val", 0))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("synthetic_eve")
    make_synthetic_eve(
        root / "raw", train_participants=1, val_participants=1, steps=STEPS, frames=FRAMES, seed=SEED, face_size=FACE, eye_size=EYE
    )
    files = convert_eve(root / "raw", root / "h5", every=EVERY)
    return root / "raw", {p.parent.name.removeprefix("participant_"): p for p in files}


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("face", "leye", "reye", "gaze", "frame_index", "step_index")} | {"steps": list(f.attrs["steps"])}


def _kept(split: str, k: int) -> list[tuple[int, int]]:
    """(stimulus step, frame) of every frame convert-eve should keep: every EVERY-th, valid."""
    stimuli = participant_truth(SEED, split, k, steps=STEPS, frames=FRAMES)[1:]
    return [(s, i) for s, t in enumerate(stimuli) for i in range(0, FRAMES, EVERY) if t.validity[i]]


def test_labels_are_the_truth_of_exactly_the_valid_frames(converted):
    raw, files = converted
    dropped_invalid = 0
    for split, k in PARTICIPANTS:
        name = f"{split}{k + 1:02d}"
        truth = participant_truth(SEED, split, k, steps=STEPS, frames=FRAMES)
        stimuli = truth[1:]
        dropped_invalid += sum(int((~t.validity[::EVERY]).sum()) for t in stimuli)
        for t in truth:  # the raw labels: the truth where valid, NaN on some invalid frames
            with h5py.File(raw / name / t.name / "basler.h5") as f:
                data, validity = f[LABEL_GROUP]["data"][()], f[LABEL_GROUP]["validity"][()]
            np.testing.assert_array_equal(validity, t.validity)
            np.testing.assert_array_equal(data[t.validity], t.gaze[t.validity])
            assert np.isnan(data[~t.validity]).any()
        out = _read(files[name])
        kept = _kept(split, k)
        assert list(zip(out["step_index"].tolist(), out["frame_index"].tolist())) == kept
        np.testing.assert_array_equal(out["gaze"], np.stack([stimuli[s].gaze[i] for s, i in kept]))
    assert dropped_invalid > 0  # the data set does exercise the validity filter at this EVERY


def test_images_decode_as_rendered_with_eyes_on_their_sides(converted):
    _, files = converted
    for split, k in PARTICIPANTS:
        out = _read(files[f"{split}{k + 1:02d}"])
        n = len(out["gaze"])
        assert out["face"].shape == (n, 224, 224, 3) and out["face"].dtype == np.uint8
        assert out["leye"].shape == out["reye"].shape == (n, 112, 112, 3)
        stimuli = participant_truth(SEED, split, k, steps=STEPS, frames=FRAMES)[1:]
        clean = [render_sample(t.params) for t in stimuli]  # the same scenes without sensor noise
        expected = {key: np.stack([clean[s][key][i] for s, i in _kept(split, k)]).astype(np.float32) for key in ("face", "leye", "reye")}

        def mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.abs(a.astype(np.float32) - b).mean(axis=(1, 2, 3))

        # Differences: sensor noise, resampling to 128/64 px and back, H.264; the two eyes differ by > 15 grey levels.
        assert mae(out["face"], expected["face"]).max() < 8
        for eye, other in (("leye", "reye"), ("reye", "leye")):
            right, swapped = mae(out[eye], expected[eye]), mae(out[eye], expected[other])
            assert right.max() < 9
            assert (swapped > right + 6).all()


def test_calibration_step_is_written_and_skipped(converted):
    raw, files = converted
    for split, k in PARTICIPANTS:
        name = f"{split}{k + 1:02d}"
        names = [t.name for t in participant_truth(SEED, split, k, steps=STEPS, frames=FRAMES)]
        assert names[0] == CALIBRATION_STEP
        assert sorted(p.name for p in (raw / name).iterdir()) == sorted(names)
        assert sorted(p.name for p in (raw / name / CALIBRATION_STEP).iterdir()) == [
            "basler.h5", "basler.timestamps.txt", "basler_eyes.mp4", "basler_face.mp4",
        ]
        assert _read(files[name])["steps"] == names[1:]


def test_bad_patch_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="eye 63"):
        make_synthetic_eve(tmp_path, eye_size=63)


def test_steps_without_eve_format_is_refused(tmp_path, capsys):
    assert main(["make-synthetic", str(tmp_path / "s"), "--steps", "2"]) == 2
    assert "--steps applies to --format eve only" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_cli_round_trip(tmp_path):
    raw, h5 = tmp_path / "raw", tmp_path / "h5"
    args = ["--train-participants", "1", "--val-participants", "1", "--samples", "6", "--steps", "1"]
    assert main(["make-synthetic", str(raw), "--format", "eve", *args]) == 0
    assert sorted(p.name for p in raw.iterdir()) == ["train01", "val01"]
    assert main(["validate-data", str(raw)]) == 0
    assert main(["convert-eve", str(raw), str(h5), "--every", "1"]) == 0
    assert main(["validate-data", str(h5)]) == 0
    with h5py.File(h5 / "train" / "participant_train01" / "frames_basler.h5") as f:
        assert len(f["gaze"]) == 5  # 6 frames, one invalid
