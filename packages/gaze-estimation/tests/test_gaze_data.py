from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gaze_estimation.augment import AugmentConfig
from gaze_estimation.data import GazeH5Dataset, find_h5_files, load_split
from gaze_estimation.h5format import H5Writer
from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.samplers import SeededDataset


def write_file(path: Path, n: int = 4, *, gaze=None, drop: str | None = None, eye_rows: int | None = None, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["face"] = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
        f["leye"] = rng.integers(0, 256, (eye_rows or n, 112, 112, 3), dtype=np.uint8)
        f["reye"] = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
        f["gaze"] = rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32) if gaze is None else gaze
        if drop:
            del f[drop]
    return path


def test_index_is_lazy_and_samples_are_correct(synth_root):
    files = find_h5_files(synth_root, "train")
    assert len(files) == 4 and all(p.name == "frames_basler.h5" for p in files)
    ds = load_split(synth_root, "train")
    assert len(ds) == 128 and ds.participants == ["train01", "train02", "train03", "train04"]
    assert ds._handles == {}  # indexing opened no file for good
    s = ds[33]
    assert s["face"].shape == (3, 224, 224) and s["face"].dtype == torch.uint8
    assert s["leye"].shape == (3, 112, 112) and s["reye"].shape == (3, 112, 112)
    with h5py.File(files[1]) as f:
        assert np.array_equal(s["face"].numpy().transpose(1, 2, 0), f["face"][1])
        assert np.array_equal(s["reye"].numpy().transpose(1, 2, 0), f["reye"][1])
        np.testing.assert_array_equal(s["gaze"].numpy(), f["gaze"][1])
    assert ds.participants[s["participant"]] == "train02" and s["index"] == 33
    ds.close()


def test_workers_open_their_own_handles(synth_root):
    ds = load_split(synth_root, "val")
    first = ds[0]["face"].clone()  # the parent now holds an open handle
    assert ds._handles
    loader = DataLoader(ds, batch_size=8, num_workers=2)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == len(ds) == 32
    assert torch.equal(batches[0]["face"][0], first)
    assert torch.equal(torch.cat([b["gaze"] for b in batches]), torch.from_numpy(ds.gaze))
    ds.close()


def test_seeded_augmentation_is_reproducible(synth_root):
    ds = SeededDataset(load_split(synth_root, "train", augment=AugmentConfig(flip_prob=0.5)), seed=3)
    a, b = ds[5], ds[5]
    assert torch.equal(a["face"], b["face"]) and torch.equal(a["gaze"], b["gaze"])
    ds.set_epoch(1)
    flips = [bool(ds[i]["gaze"][1] != ds.dataset.gaze[i, 1]) for i in range(len(ds))]
    assert 40 < sum(flips) < 88  # about half of the samples are mirrored


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop": "leye"}, "missing dataset 'leye'"),
        ({"drop": "gaze"}, "missing dataset 'gaze'"),
        ({"eye_rows": 3}, "different lengths"),
        ({"gaze": np.zeros((4, 3), np.float32)}, "dataset 'gaze'"),
        ({"gaze": np.array([[0, 0], [np.nan, 0], [0, 0], [0, 0]], np.float32)}, "'gaze': 1 non-finite row"),
        ({"gaze": np.array([[0, 0], [0, 0], [12.0, 30.0], [0, 0]], np.float32)}, "1 row.* outside .* first at row 2 .*degrees"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, kwargs, message):
    bad = write_file(tmp_path / "train" / "participant_x" / "frames_basler.h5", **kwargs)
    with pytest.raises(DataError, match=message) as e:
        load_split(tmp_path, "train")
    assert str(bad) in str(e.value)


def test_skip_bad_counts_and_keeps_good_rows(tmp_path):
    write_file(tmp_path / "train" / "participant_a" / "frames_basler.h5", n=4)
    write_file(tmp_path / "train" / "participant_b" / "frames_basler.h5", drop="face")
    nan = np.zeros((5, 2), np.float32)
    nan[2] = np.nan
    write_file(tmp_path / "train" / "participant_c" / "frames_basler.h5", n=5, gaze=nan)
    (tmp_path / "train" / "participant_d").mkdir()
    (tmp_path / "train" / "participant_d" / "frames_basler.h5").write_text("not hdf5")
    policy = BadInputPolicy(skip=True)
    ds = load_split(tmp_path, "train", policy=policy)
    assert policy.count == 3
    assert len(ds) == 4 + 4 and ds.participants == ["a", "c"]
    assert list(ds.row_index[4:]) == [0, 1, 3, 4]
    assert np.isfinite(ds.gaze).all()


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no files match"):
        load_split(tmp_path, "train")
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "missing", "train")


def test_writer_is_atomic_and_images_only_files_load(tmp_path):
    path = tmp_path / "p" / "frames_basler.h5"
    with pytest.raises(RuntimeError):
        with H5Writer(path) as w:
            w.append(np.zeros((2, 224, 224, 3), np.uint8), np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 2)))
            raise RuntimeError("interrupted")
    assert not path.exists() and not list(path.parent.glob("*.tmp"))
    with H5Writer(path) as w:
        w.append(np.zeros((2, 224, 224, 3), np.uint8), np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 2)))
    with h5py.File(path, "a") as f:
        del f["gaze"]
    ds = GazeH5Dataset([path], require_labels=False)
    assert len(ds) == 2 and not ds.has_labels
