import numpy as np
import torch

from sparse_video_loss.data import SparseVideoDataset
from sparse_video_loss.sequences import load_sequences
from sparse_video_loss.synthetic import FIXATION, PURSUIT, SACCADE, MotionParams, generate_split, make_synthetic


def test_seeded_and_in_the_real_format(tmp_path):
    a = make_synthetic(tmp_path / "a", n_train=20, n_val=5, n_test=6, seed=4)
    b = make_synthetic(tmp_path / "b", n_train=20, n_val=5, n_test=6, seed=4)
    c = make_synthetic(tmp_path / "c", n_train=30, n_val=5, n_test=6, seed=5)
    for split in ("train", "val", "test"):
        da, db = load_sequences(a[split]), load_sequences(b[split])
        assert torch.equal(da["coordinates"], db["coordinates"]) and torch.equal(da["masks"], db["masks"])
    assert not torch.equal(load_sequences(a["test"])["coordinates"], load_sequences(c["test"])["coordinates"])
    d = make_synthetic(tmp_path / "d", n_train=50, n_val=5, n_test=6, seed=4)  # more train data: same val/test
    assert torch.equal(load_sequences(a["val"])["coordinates"], load_sequences(d["val"])["coordinates"])
    ds = SparseVideoDataset(a["test"], 10, 10)
    assert len(ds) == 6 and ds.size == 32 and ds.has_motion and ds.meta["source"] == "synthetic"


def test_motion_labels_match_the_motion_model():
    p = MotionParams()
    data = generate_split(400, 20, 32, seed=0, params=p)
    c, motion, masks = data["coordinates"].double().numpy(), data["motion"].numpy(), data["masks"].numpy()
    step = np.linalg.norm(np.diff(c, axis=1), axis=-1)  # displacement into frame t+1
    label = motion[:, 1:]
    assert np.all(step[label == FIXATION] == 0)
    pursuit = step[label == PURSUIT]
    assert np.all(pursuit <= p.pursuit_speed_px[1] + 1e-6) and np.all(pursuit > 0)
    saccade = step[label == SACCADE]
    assert np.all((saccade >= p.saccade_px[0] - 1e-6) & (saccade <= p.saccade_px[1] + 1e-6))
    lo, hi = p.margin_px, 32 - 1 - p.margin_px
    assert c.min() >= lo - 1e-9 and c.max() <= hi + 1e-9
    # Fixations never hold longer than the longest fixation, pursuit never runs longer than the longest pursuit.
    for seq in label:
        for kind, longest in ((FIXATION, p.fixation_frames[1]), (PURSUIT, p.pursuit_frames[1])):
            run = 0
            for v in seq:
                run = run + 1 if v == kind else 0
                assert run <= longest
    # Every kind of motion occurs, and so does track loss in about one sequence of five.
    counts = np.bincount(motion.ravel(), minlength=3)
    assert counts.min() > 0.05 * motion.size
    with_gap = np.mean(~masks.all(axis=1))
    assert 0.12 < with_gap < 0.28
    gaps = (~masks).sum(axis=1)
    assert gaps.max() <= p.track_loss_frames[1]


def test_part_of_the_future_is_predictable():
    """Holding the last position explains the first future frame often, but never the whole future."""
    data = generate_split(500, 20, 32, seed=1)
    c = data["coordinates"].numpy()
    held_next = np.mean(np.all(c[:, 10] == c[:, 9], axis=-1))
    held_all = np.mean(np.all(c[:, 10:] == c[:, 9:10], axis=(1, 2)))
    assert 0.3 < held_next < 0.9
    assert held_all < held_next / 2
