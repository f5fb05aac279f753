"""The temporal model, its data and its comparison: causality and streaming, windows, losses, bootstrap."""

from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from gaze_estimation.augment import AugmentConfig
from gaze_estimation.compare import participant_bootstrap, verdict
from gaze_estimation.h5format import H5Writer
from gaze_estimation.losses import gaze_loss, sequence_loss
from gaze_estimation.metrics import error_by_position
from gaze_estimation.models import ModelConfig, build_model
from gaze_estimation.sequences import SequenceDataset, find_runs, run_windows
from gaze_estimation.synthetic_sequences import (
    SequenceNoise,
    context_margin,
    expected_errors,
    fixation_means,
    gaze_sequence,
)
from gaze_estimation.temporal import GazeTRTemporal, TemporalStream
from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import atomic_save
from perception_shared.errors import CheckpointError, DataError

FRAME = ModelConfig(name="gazetr_tiny", tiny_width=4, d_model=32, num_layers=1, num_heads=4, dim_feedforward=64, dropout=0.0, pretrained=False)
TEMPORAL = replace(FRAME, name="gazetr_temporal", frame_model="gazetr_tiny")


def crops(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, 224, 224, generator=g), torch.rand(b, t, 3, 112, 112, generator=g), torch.rand(b, t, 3, 112, 112, generator=g)


def trained_looking(kind: str, window: int) -> GazeTRTemporal:
    """A temporal model whose correction is not zero (as after training), in eval mode."""
    model, _ = build_model(replace(TEMPORAL, temporal=kind, temporal_layers=2), window=window)
    torch.manual_seed(0)
    for p in model.temporal.out.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return model.eval()


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_streaming_gives_the_numbers_of_the_whole_window_and_is_causal(kind):
    model = trained_looking(kind, window=4)
    face, leye, reye = crops(2, 6)
    with torch.no_grad():
        whole = model(face, leye, reye)
        stream = TemporalStream(model)
        steps = torch.stack([stream.step(face[:, t], leye[:, t], reye[:, t]) for t in range(6)], dim=1)
        chunked = torch.cat([model.run(face[:, :4], leye[:, :4], reye[:, :4])[0], model.run(face[:, 4:], leye[:, 4:], reye[:, 4:], model.run(face[:, :4], leye[:, :4], reye[:, :4])[1])[0]], dim=1)
        # the future does not change the past: new frames 3.. leave outputs 0..2 as they were
        face2 = face.clone()
        face2[:, 3:] = torch.rand_like(face2[:, 3:])
        changed = model(face2, leye, reye)
    assert whole.shape == (2, 6, 2)
    torch.testing.assert_close(steps, whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(changed[:, :3], whole[:, :3], atol=1e-6, rtol=0)
    assert (changed[:, 3:] - whole[:, 3:]).abs().max() > 1e-5
    # the context matters: frame 2 alone is not frame 2 after frames 0 and 1
    alone = model(face[:, 2:3], leye[:, 2:3], reye[:, 2:3])
    assert (alone[:, 0] - whole[:, 2]).abs().max() > 1e-5


def test_init_from_a_single_frame_run_starts_as_that_run(tmp_path):
    frame, _ = build_model(FRAME)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in frame.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frame.eval()
    ckpt = tmp_path / "best_model.pth"
    from dataclasses import asdict

    atomic_save({"model": frame.state_dict(), "config": {"model": asdict(FRAME)}}, ckpt)
    model, sources = build_model(replace(TEMPORAL, init_from=ckpt), window=8)
    model.eval()
    face, leye, reye = crops(2, 3, seed=2)
    with torch.no_grad():
        single = torch.stack([frame(face[:, t], leye[:, t], reye[:, t]) for t in range(3)], dim=1)
        torch.testing.assert_close(model(face, leye, reye), single, atol=1e-6, rtol=0)
    assert set(sources) == {"frame"} and sources["frame"].path == ckpt and len(sources["frame"].sha256) == 64
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model(replace(TEMPORAL, d_model=64, init_from=ckpt))
    with pytest.raises(CheckpointError, match="single-frame gazetr_lite"):
        build_model(replace(TEMPORAL, frame_model="gazetr_lite", init_from=ckpt))


def test_frozen_encoder_gets_no_gradient():
    model, _ = build_model(TEMPORAL, window=4)
    model.train()
    model.freeze_encoder(True)
    out = model(*crops(2, 3))
    out.sum().backward()
    assert all(p.grad is None for n, p in model.frame.named_parameters() if not n.startswith("head."))
    assert all(p.grad is not None for p in model.temporal.gru.parameters())
    assert not model.frame.face.training and model.frame.head.training


def write_sequence_file(path, steps, frames, every=6, n_bad=()):
    """A small file with step/frame indices: ``steps`` and ``frames`` per row; ``n_bad`` rows get NaN labels."""
    n = len(steps)
    rng = np.random.default_rng(0)
    gaze = rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32)
    gaze[list(n_bad)] = np.nan
    face = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None], 224, 1).repeat(224, 2).repeat(3, 3)
    eye = face[:, :112, :112]
    with H5Writer(path, extra=("step_index", "frame_index")) as w:
        w.append(face, eye, eye, gaze, step_index=np.asarray(steps), frame_index=np.asarray(frames))
        w.file.attrs["every"] = every
    return gaze


def test_windows_follow_runs_and_evaluation_covers_every_frame_once(tmp_path):
    # step 0: frames 0..5 (every 6: 0, 6, ..., 30), a converter gap, then 42, 48; step 1: 5 frames
    steps = [0] * 8 + [1] * 5
    frames = [0, 6, 12, 18, 24, 30, 42, 48] + [0, 6, 12, 18, 24]
    path = tmp_path / "train" / "participant_p1" / "frames_basler.h5"
    gaze = write_sequence_file(path, steps, frames, n_bad=(10,))
    eval_set = SequenceDataset([path], length=4, stride=None, policy=BadInputPolicy(skip=True))
    # runs: rows 0-5, rows 6-7 (gap), rows 8-9 (row 10 dropped for its label), rows 11-12
    assert [tuple(w) for w in eval_set.windows] == [(0, 4), (4, 2), (6, 2), (8, 2), (10, 2)]
    covered = np.concatenate([np.arange(g, g + n) for g, n in eval_set.windows])
    assert sorted(covered) == list(range(len(eval_set.frames)))  # each kept frame once
    assert eval_set.position_of.tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 0, 1, 0, 1]
    item = eval_set[1]
    assert item["valid"].tolist() == [True, True, False, False]
    assert item["frames"].tolist() == [4, 5, -1, -1]
    assert item["face"].shape == (4, 3, 224, 224) and item["face"][:, 0, 0, 0].tolist() == [4, 5, 5, 5]  # padding repeats
    np.testing.assert_array_equal(item["gaze"][:2].numpy(), gaze[[4, 5]])
    train_set = SequenceDataset([path], length=4, stride=1, policy=BadInputPolicy(skip=True))
    assert [tuple(w) for w in train_set.windows] == [(0, 4), (1, 4), (2, 4), (6, 2), (8, 2), (10, 2)]
    assert run_windows(10, 4, 4) == [(0, 4), (4, 4), (6, 4)]  # the tail of a run is seen too
    assert find_runs(np.array([0, 1, 3]), np.zeros(4, int), np.arange(4) * 6, 6) == [(0, 2), (2, 1)]


def test_a_window_is_one_slice_per_key(tmp_path, monkeypatch):
    path = tmp_path / "train" / "participant_p1" / "frames_basler.h5"
    write_sequence_file(path, [0] * 6, [0, 6, 12, 18, 24, 30])
    ds = SequenceDataset([path], length=6)
    reads = []

    class Counting:
        def __init__(self, d):
            self.d = d

        def __getitem__(self, key):
            reads.append(key)
            return self.d[key]

    f, face, leye, reye = ds.frames._datasets(0)
    monkeypatch.setattr(ds.frames, "_datasets", lambda k: (f, Counting(face), Counting(leye), Counting(reye)))
    ds[0]
    assert reads == [slice(0, 6)] * 3


def test_augmentation_is_one_draw_per_window(tmp_path):
    path = tmp_path / "train" / "participant_p1" / "frames_basler.h5"
    write_sequence_file(path, [0] * 4, [0, 6, 12, 18])
    with h5py.File(path, "r+") as f:  # the same image in every frame: only the augmentation can differ
        for key in ("face", "leye", "reye"):
            d = f[key]
            d[...] = np.random.default_rng(1).integers(0, 255, d.shape[1:], dtype=np.uint8)
    aug = AugmentConfig(flip_prob=0.5, blur_prob=0.5, noise_prob=0.0)
    ds = SequenceDataset([path], length=4, augment=aug)
    raw = SequenceDataset([path], length=4)[0]
    flips = set()
    for seed in range(6):
        torch.manual_seed(seed)
        item = ds[0]
        for key in ("face", "leye", "reye"):
            assert all(torch.equal(item[key][t], item[key][0]) for t in range(4))
        flipped = torch.allclose(item["gaze"][:, 1], -raw["gaze"][:, 1])
        assert flipped or torch.allclose(item["gaze"], raw["gaze"])
        flips.add(flipped)
    assert flips == {True, False}


def test_files_without_time_order_are_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "frames_basler.h5"
    crop = np.zeros((2, 224, 224, 3), np.uint8)
    with H5Writer(path) as w:
        w.append(crop, crop[:, :112, :112], crop[:, :112, :112], np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"frames_basler.h5: no dataset 'step_index', dataset 'frame_index', attribute 'every'.*convert-eve.*--sequences"):
        SequenceDataset([path], length=4)


def test_sequence_loss_is_gaze_loss_over_the_valid_frames():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 2, generator=g) * 0.3, torch.randn(3, 5, 2, generator=g) * 0.3
    valid = torch.rand(3, 5, generator=g) > 0.3
    expected = gaze_loss(pred[valid], target[valid], 0.1)
    torch.testing.assert_close(sequence_loss(pred, target, valid, 0.1), expected)
    pred.requires_grad_(True)
    sequence_loss(pred, target, valid, 0.1).backward()
    assert torch.all(pred.grad[~valid] == 0) and pred.grad[valid].abs().sum() > 0


def test_error_by_position():
    errors = np.array([1.0, 2.0, 3.0, 5.0, 7.0])
    rows = error_by_position(errors, np.array([0, 1, 0, 1, 2]))
    assert [(r["context_frames"], r["n_frames"], r["mean_deg"]) for r in rows] == [(1, 2, 2.0), (2, 2, 3.5), (3, 1, 7.0)]


def test_participant_bootstrap_resamples_participants_not_frames():
    rng = np.random.default_rng(0)
    # every participant is better under B by 1 deg, with frame noise: the interval excludes 0
    better = {f"p{i}": np.stack([a := rng.uniform(5, 10, 200), a - 1 + rng.normal(0, 0.1, 200)], 1) for i in range(6)}
    diff, lo, hi = participant_bootstrap(better, 0.95, 500, 0)
    assert diff == pytest.approx(-1.0, abs=0.05) and hi < 0
    assert verdict(diff, lo, hi, 0.95, 6).startswith("B better")
    # half the participants better, half worse by the same amount, thousands of frames: no difference
    mixed = {f"p{i}": np.stack([a := rng.uniform(5, 10, 2000), a + (1 if i % 2 else -1)], 1) for i in range(6)}
    diff, lo, hi = participant_bootstrap(mixed, 0.95, 500, 0)
    assert lo < 0 < hi  # a frame bootstrap would call this certain; participants disagree
    assert verdict(diff, lo, hi, 0.95, 6).startswith("no difference") and "coarse" in verdict(1.0, 0.5, 1.5, 0.95, 3)
    assert verdict(1.0, 0.5, 1.5, 0.95, 6).startswith("A better")


def test_gaze_moves_in_fixations_and_the_temporal_optimum_is_better():
    rng = np.random.default_rng(0)
    noise = SequenceNoise()
    gaze, onset = gaze_sequence(rng, 4000, noise)
    lengths = np.diff(np.flatnonzero(np.r_[onset, True]))
    assert lengths.min() >= 2 and lengths.max() <= 10  # 0.2-1 s at 10 Hz
    steps = np.degrees(np.abs(np.diff(gaze, axis=0)))
    assert np.median(steps[~onset[1:]]) < 0.3 < 3 < np.median(steps[onset[1:]])  # drift inside, saccades between
    e = expected_errors(noise, window=8, n_windows=1500)
    assert e["temporal_deg"] < e["single_frame_deg"] - 2
    none = expected_errors(replace(noise, pupil_jitter_deg=0.0, blink_prob=0.0), window=8, n_windows=300)
    assert none["single_frame_deg"] < 0.1 and abs(none["margin_deg"]) < 0.5  # no noise: nothing to win (the filter only blurs the drift)


def test_the_context_filter_averages_a_fixation_and_carries_it_through_blinks():
    readings = np.array([[1.0, 1.0], [3.0, 3.0], [100.0, 100.0], [5.0, 5.0], [7.0, 7.0], [9.0, 9.0]])
    eyes_open = np.array([1, 1, 0, 1, 1, 0])
    fixation = np.array([0, 0, 1, 1, 1, 1])  # a saccade hidden by the blink at frame 2
    position = np.array([0, 1, 2, 3, 0, 1])  # a new window at frame 4
    means, counts = fixation_means(readings, eyes_open, fixation, position)
    np.testing.assert_allclose(means[:, 0], [1.0, 2.0, 2.0, 5.0, 7.0, 7.0])  # frame 2 carries the stale fixation
    np.testing.assert_array_equal(counts, [1, 2, 2, 1, 1, 1])


def test_context_margin_counts_only_what_averaging_can_remove():
    rng = np.random.default_rng(0)
    gaze, onset = gaze_sequence(rng, 4000, SequenceNoise())
    fixation, position, eyes_open = np.cumsum(onset) - 1, np.arange(4000) % 8, np.ones(4000, dtype=bool)
    independent = gaze + rng.normal(0.0, np.radians(4.0), gaze.shape)
    persistent = gaze + rng.normal(0.0, np.radians(4.0), (fixation.max() + 1, 2))[fixation]
    gained = context_margin(independent, gaze, eyes_open, fixation, position)
    assert gained["margin_deg"] > 1.0 and gained["single_frame_deg"] == pytest.approx(np.degrees(np.radians(4.0) * np.sqrt(np.pi / 2)), rel=0.1)
    assert abs(context_margin(persistent, gaze, eyes_open, fixation, position)["margin_deg"]) < 0.2  # only the drift blurs
    blinking = rng.random(4000) < 0.5
    mean = np.where(blinking[:, None], gaze.mean(axis=0), independent)
    assert context_margin(mean, gaze, ~blinking, fixation, position)["margin_deg"] > gained["margin_deg"] + 1  # carried through blinks
