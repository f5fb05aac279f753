"""The study's original files (data/train_data.pt, ...): key mapping, coordinate conventions, checks."""

import ast
from pathlib import Path

import pytest
import torch

import sparse_video_loss
from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from sparse_video_loss.config import CoordinateConvention, OriginalFormatConfig, OriginalKeys
from sparse_video_loss.original_data import from_native, load_original, to_native, write_original
from sparse_video_loss.sequences import load_sequences
from sparse_video_loss.synthetic import make_synthetic
from sparse_video_loss.train import load_split


def study_render(coordinates, fixation_mask, size=32):
    """The study's own rendering rule, written out independently: frames[b, t, 0, c0.long(), c1.long()] = 1."""
    n, T, _ = coordinates.shape
    frames = torch.zeros(n, T, 1, size, size)
    for b in range(n):
        for t in range(T):
            if fixation_mask[b, t]:
                r, c = coordinates[b, t].long().tolist()
                if 0 <= r < size and 0 <= c < size:
                    frames[b, t, 0, r, c] = 1.0
    return frames


def test_synthetic_original_files_round_trip_and_render_as_the_study_does(tmp_path, tiny_config):
    native = make_synthetic(tmp_path / "native", n_train=6, n_val=4, n_test=5, seed=4)
    original = make_synthetic(tmp_path / "orig", n_train=6, n_val=4, n_test=5, seed=4, original=OriginalFormatConfig())
    assert [p.name for p in original.values()] == ["train_data.pt", "val_data.pt", "test_data.pt"]
    raw = torch.load(original["test"], weights_only=True)
    assert set(raw) == {"coordinates", "fixation_mask"} and raw["fixation_mask"].dtype == torch.float32
    cfg = tiny_config(tmp_path / "orig", "data.format=original")
    ds = load_split(cfg, "test")
    reference = load_sequences(native["test"])
    assert torch.equal(ds.masks, reference["masks"])
    m = reference["masks"]
    assert torch.allclose(ds.coordinates[m], reference["coordinates"][m], atol=1e-5)
    expected = study_render(raw["coordinates"], raw["fixation_mask"])
    for i in range(len(ds)):
        s = ds[i]
        assert torch.equal(torch.cat([s["inputs"], s["targets"]]), expected[i]), i


@pytest.mark.parametrize("convention", [
    CoordinateConvention("pixels", "yx", "corner"),
    CoordinateConvention("pixels", "xy", "center"),
    CoordinateConvention("normalized", "xy", "corner"),
    CoordinateConvention("normalized", "yx", "center"),
])
def test_conventions_invert_and_keep_pixels(convention):
    g = torch.Generator().manual_seed(1)
    points = torch.rand(50, 2, generator=g, dtype=torch.float64) * 31.99 - 0.5  # native (x, y), pixel centres at integers
    written = from_native(points, convention, 32)
    assert torch.allclose(to_native(written, convention, 32), points)
    col = torch.floor(points[:, 0] + 0.5)
    # The same pixel, found from the written values by the rule each convention states.
    c = written[:, 0] if convention.order == "xy" else written[:, 1]
    if convention.units == "normalized":
        c = c * (32 if convention.origin == "corner" else 31)
    assert torch.equal(torch.floor(c if convention.origin == "corner" else c + 0.5), col)


def test_a_mapping_that_does_not_fit_lists_the_keys_and_shapes_found(tmp_path):
    path = tmp_path / "train_data.pt"
    torch.save({"coords": torch.zeros(4, 20, 2), "fixation_mask": torch.ones(4, 20), "frames": torch.zeros(4, 1, 20, 32, 32)}, path)
    with pytest.raises(DataError) as e:
        load_original(path, OriginalFormatConfig())
    msg = str(e.value)
    assert "no key 'coordinates' (data.original.keys.coordinates)" in msg
    assert "'coords': a torch.float32 tensor of shape (4, 20, 2)" in msg and "(4, 1, 20, 32, 32)" in msg
    torch.save({"coordinates": torch.zeros(4, 20, 2), "fixation_mask": torch.ones(4, 19)}, path)
    with pytest.raises(DataError, match=r"'fixation_mask' \(data.original.keys.mask\) must be a \(N, T\) = \(4, 20\)"):
        load_original(path, OriginalFormatConfig())
    torch.save({"coordinates": torch.zeros(4, 20, 2), "fixation_mask": torch.full((4, 20), 2.0)}, path)
    with pytest.raises(DataError, match="0/1 or bool, but sequence 0, frame 0 is 2.0"):
        load_original(path, OriginalFormatConfig())


def test_the_declared_units_are_checked_against_the_grid(tmp_path):
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "val_data.pt"
    torch.save({"coordinates": torch.rand(5, 20, 2, generator=g), "fixation_mask": torch.ones(5, 20)}, path)
    with pytest.raises(DataError, match="units is pixels of a 32x32 grid, but valid points span .* look normalized"):
        load_original(path, OriginalFormatConfig())
    normalized = OriginalFormatConfig(convention=CoordinateConvention(units="normalized"))
    assert load_original(path, normalized)["coordinates"].shape == (5, 20, 2)
    torch.save({"coordinates": torch.rand(5, 20, 2, generator=g) * 31, "fixation_mask": torch.ones(5, 20)}, path)
    with pytest.raises(DataError, match="units is normalized, but valid points span .* look like pixels"):
        load_original(path, normalized)


def test_points_off_the_grid_are_named_or_skipped(tmp_path):
    coords = torch.full((3, 20, 2), 5.0)
    coords[1, 7] = torch.tensor([32.0, 4.0])  # the study's generator clamps to [0, 32]: 32 is off the grid
    path = tmp_path / "test_data.pt"
    torch.save({"coordinates": coords, "fixation_mask": torch.ones(3, 20)}, path)
    with pytest.raises(DataError, match=r"'coordinates' of sequence 1, frame 7 = \(32, 4\) in the file, \(3.5, 31.5\) .* outside"):
        load_original(path, OriginalFormatConfig())
    policy = BadInputPolicy(skip=True)
    assert len(load_original(path, OriginalFormatConfig(), policy)["coordinates"]) == 2 and policy.count == 1


def test_stored_frames_catch_a_wrong_order_and_name_the_right_one(tmp_path):
    g = torch.Generator().manual_seed(2)
    cfg = OriginalFormatConfig(keys=OriginalKeys(frames="frames"))
    points = torch.rand(4, 20, 2, generator=g) * 30
    write_original(tmp_path / "train_data.pt", points, torch.ones(4, 20, dtype=torch.bool), cfg)
    assert load_original(tmp_path / "train_data.pt", cfg)["coordinates"].shape == (4, 20, 2)
    swapped = OriginalFormatConfig(keys=OriginalKeys(frames="frames"), convention=CoordinateConvention(order="xy"))
    with pytest.raises(DataError, match=r"order=xy.* points fall on another pixel .*; units=pixels, order=yx, origin=corner renders every one"):
        load_original(tmp_path / "train_data.pt", swapped)


def test_longer_sequences_keep_their_first_frames_as_the_study_does(tmp_path, tiny_config):
    g = torch.Generator().manual_seed(3)
    coords = torch.rand(4, 32, 2, generator=g) * 31
    for split in ("train", "val", "test"):
        torch.save({"coordinates": coords, "fixation_mask": torch.ones(4, 32)}, tmp_path / f"{split}_data.pt")
    ds = load_split(tiny_config(tmp_path, "data.format=original"), "val")
    s = ds[2]
    assert s["inputs"].shape == (10, 1, 32, 32) and s["targets"].shape == (10, 1, 32, 32)
    assert torch.equal(s["targets"], study_render(coords[2:3, :20], torch.ones(1, 20))[0, 10:])


def _package_imports(module: str) -> set[str]:
    """The package modules ``module`` imports, directly or through others (lazy imports in functions too)."""
    root = Path(sparse_video_loss.__file__).parent
    seen, todo = set(), [module]
    while todo:
        tree = ast.parse((root / f"{todo.pop()}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                todo += [n for n in names if n not in seen]
                seen.update(names)
    return seen


def test_the_reader_stands_on_the_format_and_the_format_imports_no_reader():
    """Import direction: sequences (the format) <- original_data (a reader) <- data (picks the reader)."""
    assert "sequences" in _package_imports("original_data") and "data" not in _package_imports("original_data")
    assert not {"data", "original_data"} & _package_imports("sequences")
    assert {"sequences", "original_data"} <= _package_imports("data") and "data" not in _package_imports("data")
