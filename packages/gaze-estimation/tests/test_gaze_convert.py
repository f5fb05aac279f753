from pathlib import Path

import h5py
import numpy as np
import pytest

from gaze_estimation import synthetic_eve
from gaze_estimation.cli import main
from gaze_estimation.convert import convert_eve
from gaze_estimation.data import load_split
from perception_shared.errors import DataError

N = 10
RED, BLUE = (230, 20, 20), (20, 20, 230)


def write_video(path: Path, frames: np.ndarray) -> None:
    """Frames (T, H, W, 3) uint8 RGB -> lossless H.264 mp4 (the colour checks below need exact pixels)."""
    synthetic_eve.write_video(path, frames, lossless=True)


def write_step(folder: Path, *, gaze: np.ndarray, validity: np.ndarray, face_frames: int = N, camera: str = "basler") -> None:
    """One EVE stimulus folder: <camera>.h5 with the label groups, face and eye videos, timestamps."""
    folder.mkdir(parents=True)
    n = len(gaze)
    with h5py.File(folder / f"{camera}.h5", "w") as f:
        f["camera_matrix"] = np.eye(3)
        for side in ("face", "left", "right"):
            f.create_group(f"{side}_g_tobii")
            f[f"{side}_g_tobii/data"] = gaze if side == "face" else gaze + 0.05
            f[f"{side}_g_tobii/validity"] = validity
            f.create_group(f"{side}_PoG_tobii")
            f[f"{side}_PoG_tobii/data"] = np.zeros((n, 2))
            f[f"{side}_PoG_tobii/validity"] = validity
    # face frame i is uniformly gray at 10 + 20 i, so the converted frames tell which frame they came from
    face = np.stack([np.full((64, 64, 3), 10 + 20 * i, np.uint8) for i in range(face_frames)])
    eyes = np.zeros((n, 32, 64, 3), np.uint8)
    eyes[:, :, :32] = RED  # left half of the eye video: the subject's right eye
    eyes[:, :, 32:] = BLUE
    write_video(folder / f"{camera}_face.mp4", face)
    write_video(folder / f"{camera}_eyes.mp4", eyes)
    np.savetxt(folder / f"{camera}.timestamps.txt", np.arange(n) * 16_666_667, fmt="%d")


def gaze_rows(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (N, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def eve_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eve")
    valid = np.ones(N, bool)
    valid[4] = False
    write_step(root / "train01" / "step007_image_MIT-i2277207572", gaze=gaze_rows(0), validity=valid)
    write_step(root / "train01" / "step030_video_diem-harry-potter-6-trailer", gaze=gaze_rows(1), validity=np.ones(N, bool))
    write_step(root / "train01" / "step001_eye_tracker_calibration", gaze=gaze_rows(2), validity=np.ones(N, bool))
    write_step(root / "val01" / "step120_wikipedia_wikipedia-random", gaze=gaze_rows(3), validity=np.ones(N, bool))
    write_step(root / "test01" / "step007_image_MIT-i2277207572", gaze=gaze_rows(4), validity=np.ones(N, bool))
    return root


def test_convert_real_layout(eve_root, tmp_path):
    files = convert_eve(eve_root, tmp_path / "out", every=2)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files] == [
        "train/participant_train01/frames_basler.h5",
        "val/participant_val01/frames_basler.h5",
    ]
    with h5py.File(files[0]) as f:
        assert list(f.attrs["steps"]) == ["step007_image_MIT-i2277207572", "step030_video_diem-harry-potter-6-trailer"]
        assert f.attrs["label_key"] == "face_g_tobii/data"
        # every 2nd frame, frame 4 of the first step invalid: 0, 2, 6, 8 then 0, 2, 4, 6, 8
        assert list(f["frame_index"][()]) == [0, 2, 6, 8, 0, 2, 4, 6, 8]
        assert list(f["step_index"][()]) == [0] * 4 + [1] * 5
        np.testing.assert_array_equal(f["gaze"][:4], gaze_rows(0)[[0, 2, 6, 8]])
        np.testing.assert_array_equal(f["gaze"][4:], gaze_rows(1)[::2])
        face, leye, reye = f["face"][()], f["leye"][()], f["reye"][()]
    assert face.shape == (9, 224, 224, 3) and leye.shape == reye.shape == (9, 112, 112, 3)
    np.testing.assert_allclose(face.reshape(9, -1).mean(1), 10 + 20 * np.array([0, 2, 6, 8, 0, 2, 4, 6, 8]), atol=3)
    # the eye video's left half is the subject's right eye
    np.testing.assert_allclose(reye[:, 8:-8, 8:-8].reshape(-1, 3).mean(0), RED, atol=6)
    np.testing.assert_allclose(leye[:, 8:-8, 8:-8].reshape(-1, 3).mean(0), BLUE, atol=6)
    ds = load_split(tmp_path / "out", "train")
    assert len(ds) == 9 and ds.participants == ["train01"]


def test_convert_cli_subset_and_errors(eve_root, tmp_path, capsys):
    assert main(["convert-eve", str(eve_root), str(tmp_path / "o"), "--participants", "val01", "--every", "5"]) == 0
    with h5py.File(tmp_path / "o" / "val" / "participant_val01" / "frames_basler.h5") as f:
        assert list(f["frame_index"][()]) == [0, 5]
    assert not (tmp_path / "o" / "train").exists()
    assert main(["convert-eve", str(eve_root), str(tmp_path / "o2"), "--participants", "train99"]) == 2
    assert "no participant folder(s) train99" in capsys.readouterr().err


def test_frame_count_mismatch_is_reported_or_skipped(tmp_path):
    root = tmp_path / "eve"
    write_step(root / "train02" / "step007_image_MIT-a", gaze=gaze_rows(5), validity=np.ones(N, bool))
    write_step(root / "train02" / "step008_image_MIT-b", gaze=gaze_rows(6), validity=np.ones(N, bool), face_frames=N - 1)
    bad = root / "train02" / "step008_image_MIT-b" / "basler_face.mp4"
    with pytest.raises(DataError, match="has 9 frames but basler.h5 'face_g_tobii' has 10 rows") as e:
        convert_eve(root, tmp_path / "out")
    assert str(bad) in str(e.value)
    assert not list((tmp_path / "out").rglob("*.h5"))  # nothing half-written is left behind
    files = convert_eve(root, tmp_path / "out", skip_bad=True, every=3)
    with h5py.File(files[0]) as f:
        assert list(f["step_index"][()]) == [0] * 4 and list(f["frame_index"][()]) == [0, 3, 6, 9]


def test_missing_label_group_names_file_and_key(tmp_path):
    root = tmp_path / "eve"
    write_step(root / "train03" / "step007_image_MIT-a", gaze=gaze_rows(7), validity=np.ones(N, bool))
    h5 = root / "train03" / "step007_image_MIT-a" / "basler.h5"
    with h5py.File(h5, "a") as f:
        del f["face_g_tobii/validity"]
    with pytest.raises(DataError, match="missing dataset 'face_g_tobii/validity'") as e:
        convert_eve(root, tmp_path / "out")
    assert str(h5) in str(e.value)
