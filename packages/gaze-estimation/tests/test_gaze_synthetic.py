import dataclasses

import h5py
import numpy as np
import pytest
import torch

from gaze_estimation.augment import AugmentConfig, augment_sample, augment_window, hflip_sample, shift_crop
from gaze_estimation.synthetic import (
    _base_layers,
    _eye_layers,
    _grid,
    face_centre_image,
    make_synthetic,
    render_face,
    render_sample,
    sample_params,
    sample_participant,
)


def params(n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return sample_params(rng, n, sample_participant(rng))


def pupil_centre(img: np.ndarray) -> np.ndarray:
    """Centroid (u, v) of the darkest pixels of an (H, W, 3) uint8 eye crop."""
    g = img.astype(float).mean(axis=2)
    v, u = np.nonzero(g <= g.min() + 12)
    return np.array([u.mean(), v.mean()])


def test_iris_follows_gaze_in_the_geometry_convention():
    p = params(3)
    for name in ("gaze_pitch", "head_pitch", "head_yaw", "leye_du", "leye_dv", "reye_du", "reye_dv"):
        setattr(p, name, np.zeros(3, np.float32))
    # yaw > 0 is a look towards the image's left, pitch > 0 a look up
    p.gaze_yaw = np.array([-0.4, 0.0, 0.4], np.float32)
    s = render_sample(p)
    for eye in ("leye", "reye"):
        u = [pupil_centre(s[eye][i])[0] for i in range(3)]
        assert u[0] > u[1] + 5 > u[2] + 10
    p.gaze_yaw = np.zeros(3, np.float32)
    p.gaze_pitch = np.array([-0.3, 0.0, 0.3], np.float32)
    s = render_sample(p)
    v = [pupil_centre(s["leye"][i])[1] for i in range(3)]
    assert v[0] > v[1] + 3 > v[2] + 6
    np.testing.assert_allclose(s["gaze"], np.stack([p.gaze_pitch, p.gaze_yaw], 1))


def test_windowed_face_rendering_equals_full_rendering():
    p = params(3, seed=3)
    fu, fv = face_centre_image(p)
    U, V, px = _grid(224, fu + p.face_du, fv + p.face_dv, 224.0)
    full = _base_layers(p, U, V, px)
    for eye in ("leye", "reye"):
        full = _eye_layers(p, full, U, V, px, eye)
    np.testing.assert_allclose(render_face(p), np.clip(full, 0, 1), atol=1e-6)


def test_mirrored_scene_is_the_flipped_sample():
    """The flip augmentation (mirror, swap eyes, negate yaw) gives exactly the mirrored scene's sample."""
    p = params(4, seed=5)
    a = render_sample(p)
    b = render_sample(p.mirrored())
    for i in range(4):
        t = {k: torch.from_numpy(a[k][i].transpose(2, 0, 1).copy()) for k in ("face", "leye", "reye")}
        face, leye, reye, gaze = hflip_sample(t["face"], t["leye"], t["reye"], torch.from_numpy(a["gaze"][i]))
        for name, got in (("face", face), ("leye", leye), ("reye", reye)):
            want = torch.from_numpy(b[name][i].transpose(2, 0, 1).copy())
            assert (got.int() - want.int()).abs().max() <= 1, name
        torch.testing.assert_close(gaze, torch.from_numpy(b["gaze"][i]))
    # and the scene is not symmetric by itself: the flip changes the crops
    assert np.abs(a["face"].astype(int) - a["face"][:, :, ::-1].astype(int)).max() > 50


def test_augment_flip_label_and_eye_swap():
    g = torch.Generator().manual_seed(0)
    face = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=g)
    leye = torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8, generator=g)
    reye = torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8, generator=g)
    gaze = torch.tensor([0.1, 0.3])
    only_flip = AugmentConfig(flip_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, blur_prob=0.0, noise_prob=0.0)
    f2, l2, r2, g2 = augment_sample(face, leye, reye, gaze, only_flip)
    assert torch.equal(f2, face.flip(-1)) and torch.equal(l2, reye.flip(-1)) and torch.equal(r2, leye.flip(-1))
    torch.testing.assert_close(g2, torch.tensor([0.1, -0.3]))
    cfg = AugmentConfig(flip_prob=0.0, blur_prob=1.0, noise_prob=1.0)
    torch.manual_seed(7)
    out1 = augment_sample(face, leye, reye, gaze, cfg)
    torch.manual_seed(7)
    out2 = augment_sample(face, leye, reye, gaze, cfg)
    for x, y in zip(out1, out2):
        assert torch.equal(x, y)
    assert out1[0].dtype == torch.uint8 and (out1[0].int() - face.int()).abs().float().mean() > 5
    torch.testing.assert_close(out1[3], gaze)


def test_augment_config_rejects_bad_values():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="eye_jitter_px"):
        AugmentConfig(eye_jitter_px=-1.0)
    with pytest.raises(ValueError, match="blur_sigma"):
        AugmentConfig(blur_sigma=(2.0, 1.0))


def test_make_synthetic_is_seeded(tmp_path):
    a = make_synthetic(tmp_path / "a", train_participants=1, val_participants=1, samples_per_participant=5, seed=3)
    b = make_synthetic(tmp_path / "b", train_participants=1, val_participants=1, samples_per_participant=5, seed=3)
    c = make_synthetic(tmp_path / "c", train_participants=1, val_participants=1, samples_per_participant=5, seed=4)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    with h5py.File(a[0]) as fa, h5py.File(b[0]) as fb, h5py.File(c[0]) as fc:
        assert fa["face"].shape == (5, 224, 224, 3) and fa["leye"].shape == (5, 112, 112, 3) and fa["gaze"].shape == (5, 2)
        assert np.array_equal(fa["face"][()], fb["face"][()]) and np.array_equal(fa["gaze"][()], fb["gaze"][()])
        assert not np.array_equal(fa["gaze"][()], fc["gaze"][()])


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.7])
def test_gaussian_blur_matches_torchvision(sigma):
    import math

    from torchvision.transforms.v2 import functional as TF

    from gaze_estimation.augment import gaussian_blur

    x = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    k = 2 * math.ceil(3 * sigma) + 1
    torch.testing.assert_close(gaussian_blur(x, sigma), TF.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma]), atol=1e-6, rtol=0)


def test_color_matrix_equals_sequential_jitter():
    from gaze_estimation.augment import _apply_color, color_matrix

    x = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(1))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    b, c, s = 1.2, 0.8, 1.3
    x1 = b * x
    x2 = c * x1 + (1 - c) * (x1 * luma).sum(0).mean()
    x3 = s * x2 + (1 - s) * (x2 * luma).sum(0, keepdim=True)
    mean_gray = float((x * luma).sum(0).mean())
    torch.testing.assert_close(_apply_color(x, *color_matrix(b, c, s, mean_gray)), x3, atol=1e-6, rtol=0)


def test_shift_crop_is_the_crop_rendered_off_centre():
    """Shifting a crop's content by (dx, dy) pixels shows what the renderer draws with the crop centred
    (-dx, -dy) pixels away (an eye crop pixel is 52/112 scene units), except the repeated edge; and the edge
    repeats the nearest pixel (an independent index computation)."""
    p = params(2, seed=3)
    a = render_sample(p)
    span = 52.0 / 112  # scene units per eye-crop pixel
    dx, dy = 5, -3
    moved = dataclasses.replace(p, leye_du=p.leye_du - dx * span, leye_dv=p.leye_dv - dy * span, face_du=p.face_du - dx, face_dv=p.face_dv - dy)
    b = render_sample(moved)
    for name in ("leye", "face"):
        for i in range(2):
            x = torch.from_numpy(a[name][i].transpose(2, 0, 1).copy())
            got = shift_crop(x, dx, dy)
            want = torch.from_numpy(b[name][i].transpose(2, 0, 1).copy())
            inner = (slice(None), slice(max(dy, 0), x.shape[1] + min(dy, 0)), slice(max(dx, 0), x.shape[2] + min(dx, 0)))
            assert (got[inner].int() - want[inner].int()).abs().max() <= 1, name
            rows = np.clip(np.arange(x.shape[1]) - dy, 0, x.shape[1] - 1)
            cols = np.clip(np.arange(x.shape[2]) - dx, 0, x.shape[2] - 1)
            assert torch.equal(got, x[:, rows][:, :, cols])
        assert np.abs(a[name].astype(int) - b[name].astype(int)).max() > 50  # the shift is visible


def _found_shift(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int]:
    """The shift that maps ``before`` (channel 0 its row index, channel 1 its column index) onto ``after``."""
    _, h, w = before.shape
    dy, dx = h // 2 - int(after[0, h // 2, w // 2]), w // 2 - int(after[1, h // 2, w // 2])
    assert torch.equal(shift_crop(before, dx, dy), after)
    return dx, dy


def test_crop_jitter_draws_a_shift_per_crop_with_the_configured_spread():
    def coordinates(size: int) -> torch.Tensor:
        i = torch.arange(size, dtype=torch.uint8)
        return torch.stack([i[:, None].expand(size, size), i[None, :].expand(size, size), torch.zeros(size, size, dtype=torch.uint8)])

    face, leye, reye = coordinates(40), coordinates(24), coordinates(24)
    gaze = torch.tensor([0.1, 0.3])
    off = dict(flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, blur_prob=0.0, noise_prob=0.0)
    cfg = AugmentConfig(**off, eye_jitter_px=2.0)
    torch.manual_seed(0)
    shifts = []
    for _ in range(200):
        f2, l2, r2, g2 = augment_sample(face, leye, reye, gaze, cfg)
        assert torch.equal(f2, face) and torch.equal(g2, gaze)  # face_jitter_px 0: the face crop stays
        shifts.append(_found_shift(leye, l2) + _found_shift(reye, r2))
    s = np.array(shifts, dtype=float)
    assert np.abs(s).max() <= 6  # cut at 3 std
    assert np.all(np.abs(s.std(axis=0) - 2.0) < 0.45) and np.all(np.abs(s.mean(axis=0)) < 0.5)
    assert abs(np.corrcoef(s[:, 0], s[:, 2])[0, 1]) < 0.25  # the two eyes are shifted independently
    # a window of frames: one shift for all of them
    frames = [torch.stack([x] * 3) for x in (face, leye, reye)]
    wf, wl, wr, _ = augment_window(*frames, gaze.expand(3, 2), AugmentConfig(**off, eye_jitter_px=2.0, face_jitter_px=2.0))
    assert all(torch.equal(w[t], w[0]) for w in (wf, wl, wr) for t in range(3))
