import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from gaze_estimation import synthetic_eve
from gaze_estimation.cli import main
from gaze_estimation.convert import convert_eve, usable_cpus
from gaze_estimation.data import load_split
from perception_shared.errors import ConfigError, DataError

N = 10
RED, BLUE = (230, 20, 20), (20, 20, 230)


def write_video(path: Path, frames: np.ndarray) -> None:
    """Frames (T, H, W, 3) uint8 RGB -> lossless H.264 mp4 (the colour checks below need exact pixels)."""
    synthetic_eve.write_video(path, frames, lossless=True)


def write_step(
    folder: Path, *, gaze: np.ndarray, validity: np.ndarray, face_frames: int | None = None, camera: str = "basler"
) -> None:
    """One EVE stimulus folder: <camera>.h5 with the label groups, face and eye videos, timestamps."""
    folder.mkdir(parents=True)
    n = len(gaze)
    face_frames = n if face_frames is None else face_frames
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
    face = np.stack([np.full((64, 64, 3), (10 + 20 * i) % 250, np.uint8) for i in range(face_frames)])
    eyes = np.zeros((n, 32, 64, 3), np.uint8)
    eyes[:, :, :32] = RED  # left half of the eye video: the subject's right eye
    eyes[:, :, 32:] = BLUE
    write_video(folder / f"{camera}_face.mp4", face)
    write_video(folder / f"{camera}_eyes.mp4", eyes)
    np.savetxt(folder / f"{camera}.timestamps.txt", np.arange(n) * 16_666_667, fmt="%d")


def gaze_rows(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 2)).astype(np.float32)


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
    assert main(["convert-eve", str(eve_root), str(tmp_path / "o3"), "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


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


PARTICIPANTS = ("train01", "train02", "train03", "train04", "val01")
FRAMES = 40  # per stimulus folder: enough that a participant takes a while to convert, so the kill lands mid-run


@pytest.fixture(scope="module")
def eve_many(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eve_many")
    for k, name in enumerate(PARTICIPANTS):
        for j, step in enumerate(("step007_image_MIT-a", "step008_video_b")):
            valid = np.ones(FRAMES, bool)
            valid[3 + j] = False
            write_step(root / name / step, gaze=gaze_rows(10 * k + j, FRAMES), validity=valid)
    return root


@pytest.fixture
def log_messages():
    """The messages of the ``perception`` loggers while the test runs (also those a worker process sent)."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    messages: list[str] = []
    logger, handler = logging.getLogger("perception"), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def contents(path: Path) -> dict[str, object]:
    """Every dataset (dtype, shape, bytes) and every attribute of an HDF5 file, by name."""
    out: dict[str, object] = {}

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            a = obj[()]
            out[name] = (a.dtype.str, a.shape, a.tobytes())
        out.update({f"{name}@{key}": np.asarray(value).tolist() for key, value in obj.attrs.items()})

    with h5py.File(path) as f:
        visit("/", f)
        f.visititems(visit)
    return out


def tree(root: Path) -> dict[str, dict[str, object]]:
    """``contents`` of every file under ``root`` (a leftover temporary file is one too), by relative path."""
    return {p.relative_to(root).as_posix(): contents(p) for p in sorted(root.rglob("*")) if p.is_file()}


def convert_cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "gaze_estimation.cli", "convert-eve", *map(str, args)]


def test_interrupted_conversion_resumes_to_the_same_files(eve_many, tmp_path):
    """kill -9 once the first participant is complete, run again: the files equal an uninterrupted conversion.

    The uninterrupted conversion runs in two worker processes, so the comparison also shows that parallel
    conversion writes what one process writes.
    """
    out, args = tmp_path / "out", ("--workers", "1", "--every", "2")
    first = out / "train" / "participant_train01" / "frames_basler.h5"
    log = tmp_path / "interrupted.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(convert_cli(eve_many, out, *args), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while proc.poll() is None and not first.exists():
                time.sleep(0.002)
            proc.kill()
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the conversion ended before it could be interrupted:\n{log.read_text()}"
    complete = sorted(out.rglob("frames_basler.h5"))
    leftovers = sorted(out.rglob("*.tmp"))
    assert first in complete and len(complete) < len(PARTICIPANTS)
    mtime = first.stat().st_mtime_ns

    env = {k: v for k, v in os.environ.items() if k != "PERCEPTION_NO_PROGRESS"}
    env["PERCEPTION_PROGRESS_INTERVAL"] = "0"  # off a terminal: a line per update of the bar, the last one complete
    rerun = subprocess.run(convert_cli(eve_many, out, *args), env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"train01: {first} is complete (same settings and source files), skipped" in rerun.stderr
    assert first.stat().st_mtime_ns == mtime  # checked and kept, not converted again
    for tmp in leftovers:
        assert f"removed {tmp}, left by an interrupted conversion" in rerun.stderr
    left = (len(PARTICIPANTS) - len(complete)) * 2 * FRAMES
    assert f"{left}/{left}" in rerun.stderr  # the frames bar counts what is converted now

    reference = convert_eve(eve_many, tmp_path / "reference", every=2, workers=2)
    assert len(reference) == len(PARTICIPANTS)
    assert tree(out) == tree(tmp_path / "reference")


def test_rerun_checks_each_file_and_converts_again_what_is_not_complete(eve_root, tmp_path, log_messages):
    raw, out = tmp_path / "eve", tmp_path / "out"
    shutil.copytree(eve_root, raw)  # keeps modification times; this test changes one
    train, val = convert_eve(raw, out, every=2, workers=1)
    original = tree(out)

    def mtimes() -> list[int]:
        return [p.stat().st_mtime_ns for p in (train, val)]

    before = mtimes()
    assert convert_eve(raw, out, every=2, workers=1) == [train, val] and mtimes() == before
    with h5py.File(train, "a") as f:  # complete by its name, not by its content
        f["gaze"].resize(3, axis=0)
    with h5py.File(val, "a") as f:  # as written by an older convert-eve, or by something else
        del f.attrs["conversion"]
    stray = val.with_name(val.name + ".tmp")
    stray.write_bytes(b"left by a killed conversion")
    log_messages.clear()
    assert convert_eve(raw, out, every=2, workers=1) == [train, val]
    assert tree(out) == original
    text = "\n".join(log_messages)
    assert f"train01: converting again: {train} holds 'gaze' (3, 2) where its marker says 9 samples" in text
    assert f"val01: converting again: {val} has no 'conversion' marker" in text
    assert f"val01: removed {stray}, left by an interrupted conversion" in text

    log_messages.clear()
    convert_eve(raw, out, every=5, workers=1)
    assert f"val01: converting again: {val} was written with other settings (every 2 -> 5)" in log_messages
    with h5py.File(val) as f:
        assert list(f["frame_index"][()]) == [0, 5]

    before = mtimes()
    label = raw / "val01" / "step120_wikipedia_wikipedia-random" / "basler.h5"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    log_messages.clear()
    convert_eve(raw, out, every=5, workers=1)
    assert f"val01: converting again: {val} its source files changed since it was written (names, sizes or modification times)" in log_messages
    assert mtimes()[0] == before[0] and mtimes()[1] != before[1]

    log_messages.clear()
    convert_eve(raw, out, every=5, workers=1, force=True)
    assert f"train01: converting {train} again (--force)" in log_messages and mtimes()[0] != before[0]


def test_workers_name_a_bad_participant_or_skip_it(tmp_path, log_messages):
    root, out = tmp_path / "eve", tmp_path / "out"
    write_step(root / "train01" / "step007_image_MIT-a", gaze=gaze_rows(8), validity=np.ones(N, bool))
    write_step(root / "train02" / "step007_image_MIT-a", gaze=gaze_rows(9), validity=np.ones(N, bool), face_frames=N - 1)
    bad = root / "train02" / "step007_image_MIT-a" / "basler_face.mp4"
    with pytest.raises(DataError, match="has 9 frames but basler.h5 'face_g_tobii' has 10 rows") as e:
        convert_eve(root, out, workers=2)
    assert str(bad) in str(e.value)
    assert not list(out.rglob("*.tmp"))
    # --force: both participants in the worker processes again (train01 may have been completed above)
    assert convert_eve(root, out, workers=2, skip_bad=True, force=True) == [out / "train" / "participant_train01" / "frames_basler.h5"]
    # the warnings were logged in a worker process and shown by this one, and counted here
    assert any(m.startswith(f"skipping bad input {bad}: has 9 frames") for m in log_messages)
    assert any(m.startswith(f"skipping bad input {bad.parent.parent}: no valid labelled frames") for m in log_messages)
    assert "skipped 2 bad input(s)" in log_messages[-1]


def test_workers_default_to_the_cpus_this_process_may_use(monkeypatch):
    allowed = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert usable_cpus() == allowed
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(allowed + 8))  # a job's count never exceeds the affinity mask
    assert usable_cpus() == allowed
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "four")
    with pytest.raises(ConfigError, match="SLURM_CPUS_PER_TASK='four'"):
        usable_cpus()



WORKER_MODULES = """
import multiprocessing, sys

def modules(_):
    return sorted(m for m in ("torch", "av", "h5py") if m in sys.modules)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gaze_estimation.convert"])  # as convert_eve's pool does
    with ctx.Pool(1) as pool:
        print(*pool.map(modules, [0])[0])
"""


def test_worker_processes_import_no_torch(tmp_path):
    # a script of its own: a worker running a function of this test module would import the module, and torch with it
    script = tmp_path / "worker_modules.py"
    script.write_text(WORKER_MODULES)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["av", "h5py"]
