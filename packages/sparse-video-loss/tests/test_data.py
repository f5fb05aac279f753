import pytest
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from sparse_video_loss.data import SparseVideoDataset
from sparse_video_loss.sequences import create_sparse_frames, load_sequences, save_sequences


def test_create_sparse_frames_rounds_half_up_and_uses_x_as_column():
    coords = torch.tensor([[3.5, 1.0], [3.49, 1.0], [-0.5, 31.49], [0.0, 0.0], [31.4, 2.5]])
    masks = torch.tensor([True, True, True, False, True])
    frames = create_sparse_frames(coords, masks, size=32)
    assert frames.shape == (5, 1, 32, 32) and frames.dtype == torch.float32
    expected = [(1, 4), (1, 3), (31, 0), None, (3, 31)]  # (row, col)
    for t, rc in enumerate(expected):
        assert frames[t].sum() == (0 if rc is None else 1)
        if rc is not None:
            assert frames[t, 0, rc[0], rc[1]] == 1


def test_create_sparse_frames_rejects_bad_points_but_ignores_masked_ones():
    ok = create_sparse_frames(torch.tensor([[float("nan"), 99.0], [1.0, 2.0]]), torch.tensor([False, True]), 8)
    assert ok[0].sum() == 0 and ok[1, 0, 2, 1] == 1
    with pytest.raises(ValueError, match="finite"):
        create_sparse_frames(torch.tensor([[float("nan"), 1.0]]), torch.tensor([True]), 8)
    with pytest.raises(ValueError, match=r"\[-0.5, 7.5\)"):
        create_sparse_frames(torch.tensor([[7.5, 1.0]]), torch.tensor([True]), 8)


def write(path, **fields):
    torch.save(fields, path)
    return path


def good(n=3, T=20, size=32):
    g = torch.Generator().manual_seed(0)
    return {
        "coordinates": torch.rand(n, T, 2, generator=g) * (size - 1),
        "masks": torch.ones(n, T, dtype=torch.bool),
        "size": size,
    }


def test_round_trip_and_dataset_sample(tmp_path):
    d = good()
    d["masks"][1, 12] = False
    d["coordinates"][1, 12] = float("nan")  # masked frames may hold NaN
    motion = torch.zeros(3, 20, dtype=torch.int8)
    motion[:, 15] = 2
    path = save_sequences(tmp_path / "train.pt", d["coordinates"], d["masks"], 32, motion=motion, meta={"source": "test"})
    loaded = load_sequences(path)
    assert torch.equal(loaded["masks"], d["masks"]) and loaded["meta"] == {"source": "test"}
    ds = SparseVideoDataset(path, 10, 10)
    s = ds[1]
    assert s["inputs"].shape == (10, 1, 32, 32) and s["targets"].shape == (10, 1, 32, 32)
    assert s["target_mask"].tolist() == [True, True, False] + [True] * 7
    assert s["targets"][2].sum() == 0 and s["targets"].sum() == 9
    x, y = d["coordinates"][1, 13].tolist()
    assert s["target_pixels"][3].tolist() == [int(y + 0.5), int(x + 0.5)]
    assert s["targets"][3, 0, int(y + 0.5), int(x + 0.5)] == 1
    assert s["target_pixels"][2].tolist() == [-1, -1]
    assert s["motion"][5] == 2 and ds.has_motion
    assert torch.equal(s["inputs"], create_sparse_frames(d["coordinates"][1, :10], d["masks"][1, :10]))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("masks"), r"missing key\(s\) 'masks'"),
        (lambda d: d.update(extra=1), r"unknown key\(s\) 'extra'"),
        (lambda d: d.update(coordinates=torch.zeros(3, 20, 3)), r"field 'coordinates' must have shape \(N, T, 2\)"),
        (lambda d: d.update(coordinates=torch.zeros(3, 20, 2, dtype=torch.long)), "field 'coordinates' must be a float tensor"),
        (lambda d: d.update(masks=torch.ones(3, 20)), "field 'masks' must be a bool tensor"),
        (lambda d: d.update(masks=torch.ones(3, 19, dtype=torch.bool)), r"field 'masks' must have shape \(N, T\)"),
        (lambda d: d.update(size=32.0), "field 'size' must be a positive int"),
        (lambda d: d.update(format="other/2"), "field 'format'"),
        (lambda d: d.update(motion=torch.zeros(3, 20)), "field 'motion' must be an integer tensor"),
        (lambda d: d["coordinates"].__setitem__((1, 4, 0), float("nan")), r"field 'coordinates' of sequence 1, frame 4 .* not finite"),
        (lambda d: d["coordinates"].__setitem__((2, 7, 1), 31.5), r"field 'coordinates' of sequence 2, frame 7 .* outside \[-0.5, 31.5\)"),
        (lambda d: d["coordinates"].__setitem__((0, 0, 0), -0.6), r"sequence 0, frame 0 .* outside"),
        (lambda d: d.update(motion=torch.full((3, 20), 5)), r"field 'motion' of sequence 0, frame 0 = 5"),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path, change, message):
    d = good()
    change(d)
    path = write(tmp_path / "val.pt", **d)
    with pytest.raises(DataError, match=message) as err:
        load_sequences(path)
    assert str(path) in str(err.value)


def test_not_a_dict_corrupt_and_pickled_objects_are_errors(tmp_path):
    with pytest.raises(DataError, match="expected a dict"):
        load_sequences(_save(tmp_path / "a.pt", [1, 2]))
    (tmp_path / "b.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="b.pt: cannot be read as a split file"):
        load_sequences(tmp_path / "b.pt")
    _save(tmp_path / "c.pt", {"coordinates": Custom(), "masks": 1, "size": 1})  # refused by weights_only
    with pytest.raises(DataError, match="c.pt: cannot be read as a split file"):
        load_sequences(tmp_path / "c.pt")
    with pytest.raises(DataError, match="no such file"):
        load_sequences(tmp_path / "missing.pt")


class Custom:
    """An arbitrary object: loading it would need unpickling, which weights_only refuses."""


def _save(path, obj):
    torch.save(obj, path)
    return path


def test_skip_bad_drops_bad_sequences_with_a_count(tmp_path):
    d = good(n=4)
    d["coordinates"][1, 3] = 40.0
    d["coordinates"][3, 0, 0] = float("inf")
    policy = BadInputPolicy(skip=True)
    loaded = load_sequences(write(tmp_path / "t.pt", **d), policy)
    assert loaded["coordinates"].shape[0] == 2 and policy.count == 2
    assert torch.equal(loaded["coordinates"], d["coordinates"][[0, 2]])


def test_dataset_checks_sequence_length(tmp_path):
    path = write(tmp_path / "train.pt", **good(T=16))
    with pytest.raises(DataError, match="16 frames but the config asks for n_input \\+ n_output = 10 \\+ 10 = 20"):
        SparseVideoDataset(path, 10, 10)
