"""Loaders on files in the real MIT1003 / CAT2000 layouts, the split, preprocessing and bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from saliency_entropy.data import (
    FixationDataset,
    cat2000_names,
    cat2000_records,
    collate,
    ground_truth_log_density,
    load_split,
    make_split,
    mit1003_records,
    save_split,
    select_ood,
)
from saliency_entropy.synthetic import DomainSpec, density_map, sample_fixations


def _copy(root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "MIT1003"
    shutil.copytree(root / "MIT1003", out)
    return out


def test_synthetic_data_uses_the_release_layouts(synthetic_root: Path) -> None:
    mit, cat = synthetic_root / "MIT1003", synthetic_root / "CAT2000"
    assert len(list((mit / "ALLSTIMULI").glob("*.jpeg"))) == 30
    subjects = sorted(p.name for p in (mit / "DATA").iterdir())
    assert len(subjects) == 4
    mat = loadmat(mit / "DATA" / subjects[0] / "synth0000.mat")
    assert mat["synth0000"]["DATA"].flat[0]["eyeData"].flat[0].shape[1] == 2
    assert sorted(p.name for p in (cat / "Stimuli").iterdir()) == ["Action", "Indoor"]
    locs = loadmat(cat / "FIXATIONLOCS" / "Action" / "001.mat")["fixLocs"]
    with Image.open(cat / "Stimuli" / "Action" / "001.jpg") as im:
        assert locs.shape == (im.size[1], im.size[0])
    gt = np.load(mit / "GROUND_TRUTH" / "synth0000.npy")
    assert gt.shape == (192, 256) and gt.sum() == pytest.approx(1.0, abs=1e-4)


def test_fixations_are_drawn_from_the_known_density() -> None:
    spec = DomainSpec(40, 30, 1, 1, 0.6, 0.35, "warm")
    density = density_map(40, 30, [(10.0, 8.0, 3.0), (30.0, 20.0, 4.0)], spec)
    fix = sample_fixations(density, 200_000, np.random.default_rng(0))
    counts = np.zeros_like(density)
    np.add.at(counts, (fix[:, 1].astype(int), fix[:, 0].astype(int)), 1)
    assert 0.5 * np.abs(counts / counts.sum() - density).sum() < 0.03  # total variation


def test_raw_extraction_recovers_the_fixations_the_gaze_was_made_from(synthetic_root: Path) -> None:
    raw = mit1003_records(synthetic_root / "MIT1003", fixations="raw")
    from_csv = mit1003_records(synthetic_root / "MIT1003", fixations="csv")
    assert [r.name for r in raw] == [r.name for r in from_csv]
    matched = separated = 0
    for r, c in zip(raw, from_csv):
        assert len(r.fixations) <= len(c.fixations)  # close fixations merge, none appear
        assert set(r.subjects) <= set(c.subjects)
        subjects = np.array(c.subjects)
        for s in set(c.subjects):
            path = np.concatenate([[[128.0, 96.0]], c.fixations[subjects == s]])  # scanpath from the central start
            step = np.hypot(*np.diff(path, axis=0).T)
            # fixations reached and left by saccades of at least 30 px (about 1 degree at 34 px/deg)
            isolated = (step > 30) & np.append(step[1:] > 30, True)
            got = r.fixations[np.array(r.subjects) == s]
            for fx in path[1:][isolated]:
                separated += 1
                matched += bool(len(got)) and np.hypot(*(got - fx).T).min() < 1.0
    assert separated > 300 and matched / separated > 0.97
    assert raw[0].ground_truth is not None and raw[0].width == 256 and raw[0].height == 192


def test_fixation_maps_as_mat_or_fixpts_images(synthetic_root: Path, tmp_path: Path) -> None:
    root = _copy(synthetic_root, tmp_path)
    locs = root / "ALLFIXATIONMAPS"
    locs.mkdir()
    fmap = np.zeros((192, 256), dtype=np.uint8)
    fmap[[10, 50, 100], [20, 60, 200]] = 1
    savemat(locs / "synth0000.mat", {"fixLocs": fmap})
    Image.fromarray(fmap * 255).save(locs / "synth0001_fixPts.png")
    policy = BadInputPolicy(skip=True)
    records = mit1003_records(root, fixations="fixlocs", policy=policy)
    assert [r.name for r in records] == ["synth0000", "synth0001"]
    np.testing.assert_array_equal(records[0].fixations, [[20.5, 10.5], [60.5, 50.5], [200.5, 100.5]])
    np.testing.assert_array_equal(records[1].fixations, records[0].fixations)
    assert policy.count == 28  # the other images have no fixation map


def test_cat2000_records_and_ood_selection(synthetic_root: Path) -> None:
    root = synthetic_root / "CAT2000"
    names = cat2000_names(root)
    assert names[:3] == ["Action/001", "Action/002", "Action/003"] and len(names) == 6
    chosen = select_ood(names, 4, seed=0)
    assert chosen == select_ood(names, 4, seed=0)
    assert sorted({n.split("/")[0] for n in chosen}) == ["Action", "Indoor"]  # round-robin over categories
    assert select_ood(names, 100, seed=0) == names
    records = cat2000_records(root, names=chosen)
    assert [r.name for r in records] == chosen
    for r in records:
        locs = loadmat(root / "FIXATIONLOCS" / r.category / f"{r.name.split('/')[1]}.mat")["fixLocs"]
        assert len(r.fixations) == int((locs > 0).sum())
        assert (r.fixations[:, 0] < r.width).all() and (r.fixations[:, 1] < r.height).all()


def test_dataset_resizes_images_and_scales_fixations_exactly(synthetic_root: Path) -> None:
    records = mit1003_records(synthetic_root / "MIT1003", fixations="csv", names=["synth0002", "synth0005"])
    ds = FixationDataset(records, [96, 128])
    item = ds[0]
    assert item["image"].shape == (3, 96, 128) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    np.testing.assert_allclose(item["fixations"].numpy(), records[0].fixations * np.array([128 / 256, 96 / 192]))
    batch = collate([ds[0], ds[1]])
    n0, n1 = len(records[0].fixations), len(records[1].fixations)
    assert batch["fixations"].shape == (2, max(n0, n1), 2)
    assert batch["mask"].sum(dim=1).tolist() == [n0, n1]
    assert batch["index"].tolist() == [0, 1]
    gt = ground_truth_log_density(records[0], (96, 128))
    assert gt.shape == (96, 128) and float(gt.exp().sum()) == pytest.approx(1.0)


def test_split_is_seeded_by_image_and_reused(tmp_path: Path) -> None:
    names = [f"img{i:04d}" for i in range(1003)]
    split = make_split(names, 101 / 1003, seed=0)
    assert (len(split["train"]), len(split["val"])) == (902, 101)
    assert not set(split["train"]) & set(split["val"])
    assert make_split(names, 101 / 1003, seed=0) == split != make_split(names, 101 / 1003, seed=1)
    assert len(make_split(names[:30], 101 / 1003, seed=0)["val"]) == 3
    path = save_split(split, tmp_path / "split.json")
    assert load_split(path, names) == split
    with pytest.raises(DataError, match="not available"):
        load_split(path, names[:500])
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "missing.json", names)


def test_missing_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MIT1003 folder .*nowhere does not exist"):
        mit1003_records(tmp_path / "nowhere")
    (tmp_path / "M").mkdir()
    with pytest.raises(DataError, match="ALLSTIMULI folder"):
        mit1003_records(tmp_path / "M")
    with pytest.raises(DataError, match="CAT2000 Stimuli folder"):
        cat2000_records(tmp_path / "M")


def test_bad_inputs_name_the_file_or_are_counted_with_skip_bad(synthetic_root: Path, tmp_path: Path) -> None:
    root = _copy(synthetic_root, tmp_path)
    (root / "ALLSTIMULI" / "synth0003.jpeg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"synth0003\.jpeg: cannot read image"):
        mit1003_records(root)
    policy = BadInputPolicy(skip=True)
    records = mit1003_records(root, policy=policy)
    assert policy.count == 1 and "synth0003" not in [r.name for r in records]

    subject = sorted((root / "DATA").iterdir())[0]
    savemat(subject / "synth0004.mat", {"wrong_name": np.zeros((3, 2))})
    with pytest.raises(DataError, match=r"synth0004\.mat: no variable 'synth0004'"):
        mit1003_records(root, policy=BadInputPolicy(skip=False), names=["synth0004"])

    for s in (root / "DATA").iterdir():
        (s / "synth0006.mat").unlink()
    with pytest.raises(DataError, match=r"synth0006\.jpeg: image has no fixations"):
        mit1003_records(root, names=["synth0006"])

    with open(root / "fixations.csv", "a", newline="") as f:
        csv.writer(f).writerow(["300.5", "10", "synth0000.jpeg", "s00"])
    with pytest.raises(
        DataError, match=r"fixations\.csv: line \d+: fixation \(300\.5, 10\.0\) lies outside the 256x192 image"
    ):
        mit1003_records(root, fixations="csv", names=["synth0000"])
    policy = BadInputPolicy(skip=True)
    records = mit1003_records(root, fixations="csv", names=["synth0000"], policy=policy)
    assert policy.count == 1 and (records[0].fixations[:, 0] < 256).all()


def test_cat2000_map_without_the_key_or_of_the_wrong_size(synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "CAT2000"
    shutil.copytree(synthetic_root / "CAT2000", root)
    savemat(root / "FIXATIONLOCS" / "Action" / "002.mat", {"fixations": np.ones((144, 256))})
    with pytest.raises(DataError, match=r"002\.mat: no variable 'fixLocs'"):
        cat2000_records(root)
    savemat(root / "FIXATIONLOCS" / "Action" / "002.mat", {"fixLocs": np.ones((10, 10))})
    with pytest.raises(DataError, match=r"002\.mat: fixation map is 10x10, the image is 256x144"):
        cat2000_records(root)
    policy = BadInputPolicy(skip=True)
    assert len(cat2000_records(root, policy=policy)) == 5 and policy.count == 1


def test_keep_aspect_sizes_and_scaled_fixations(synthetic_root: Path) -> None:
    from saliency_entropy.data import keep_aspect_size

    assert keep_aspect_size(768, 1024, (768, 1024), 4) == (768, 1024)  # MIT1003 landscape: its own size
    assert keep_aspect_size(1024, 768, (768, 1024), 4) == (1024, 768)  # portrait: not squashed to landscape
    assert keep_aspect_size(1080, 1920, (576, 1024), 4) == (576, 1024)  # CAT2000
    assert keep_aspect_size(405, 1024, (768, 1024), 4) == (404, 1024)
    records = mit1003_records(synthetic_root / "MIT1003", fixations="csv")
    r = records[0]
    portrait = type(r)(r.name, r.image_path, r.height, r.width, r.fixations[:, ::-1].copy())  # a 192x256 portrait record
    keep = FixationDataset([r, portrait], (96, 128), "keep", 4)
    squash = FixationDataset([r, portrait], (96, 128), "squash", 4)
    assert keep.image_size(0) == (96, 128) and keep.image_size(1) == (128, 96) and squash.image_size(1) == (96, 128)
    item = keep[1]
    assert tuple(item["image"].shape) == (3, 128, 96)
    np.testing.assert_allclose(item["fixations"].numpy(), portrait.fixations * 0.5)  # one scale for both axes
