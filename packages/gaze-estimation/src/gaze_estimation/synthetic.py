"""Synthetic participants: rendered face and eye crops whose gaze is known exactly.

A participant is a head (a shaded ellipse with brows, nose and mouth on a sphere of radius ``HEAD_R``)
with two eyeballs. For each sample the head is rotated (pitch, yaw) and the eyes look along the gaze
direction, in the convention of ``gaze_estimation.geometry``:

* the eyelid aperture sits on the eyeball in the head's forward direction, so it moves with the head;
* the iris sits on the eyeball in the gaze direction ``-pitchyaw_to_vector(gaze)``, projected
  orthographically (x right, y down) and foreshortened by the angle to the camera;
* a look up raises the upper lid, a look down lowers it;
* Lambertian shading from a random light direction, a corneal highlight that follows the light, random
  background, small crop misalignment and Gaussian sensor noise.

Face and eye crops are renderings of the same scene: the face crop covers 224 x 224 scene units, each eye
crop a square of ``EYE_CROP_SPAN`` units centred on its eyeball (as data normalization centres eye
patches), sampled at 112 x 112. Everything is vectorized over samples (numpy, float32).

The scene is symmetric under a left-right mirror with yaw, head yaw and light x negated and the eyes
swapped, which is what the flip test relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from perception_shared.logging import get_logger, progress

from .data import EYE_SIZE, FACE_SIZE, PARTICIPANT_PREFIX, H5Writer, h5_name

HEAD_R = 88.0  # head sphere radius, scene units (1 unit = 1 face-crop pixel)
EYE_CROP_SPAN = 52.0  # scene units covered by an eye crop
CENTER = FACE_SIZE / 2.0
HEAD_V = CENTER + 10.0  # vertical centre of the head ellipse
EYE_WINDOW = 60  # face-crop pixels around an eye that its layers can touch

_log = get_logger("gaze_estimation.synthetic")


@dataclass
class SceneParams:
    """Per-sample scene parameters, each an ``(N,)`` or ``(N, 3)`` float32 array. Angles in radians."""

    gaze_pitch: np.ndarray
    gaze_yaw: np.ndarray
    head_pitch: np.ndarray
    head_yaw: np.ndarray
    # participant appearance
    skin: np.ndarray  # (N, 3) RGB in [0, 1]
    iris: np.ndarray  # (N, 3)
    brow: np.ndarray  # (N, 3)
    face_rx: np.ndarray  # face ellipse half-width
    face_ry: np.ndarray  # face ellipse half-height
    eye_sep: np.ndarray  # distance between the eyeball centres
    eye_w: np.ndarray  # aperture half-width
    eye_h: np.ndarray  # aperture half-height (lids at rest)
    eyeball_r: np.ndarray  # eyeball radius
    iris_r: np.ndarray  # iris radius
    pupil_r: np.ndarray  # pupil radius
    # imaging conditions
    light_x: np.ndarray  # light direction (x, y, 1), normalized when used
    light_y: np.ndarray
    ambient: np.ndarray
    diffuse: np.ndarray
    background: np.ndarray  # (N, 3)
    face_du: np.ndarray  # crop misalignment of the face crop, scene units
    face_dv: np.ndarray
    leye_du: np.ndarray  # crop misalignment of the left/right eye crops
    leye_dv: np.ndarray
    reye_du: np.ndarray
    reye_dv: np.ndarray
    noise: np.ndarray  # sensor noise std, [0, 1] intensity units

    def __len__(self) -> int:
        return len(self.gaze_pitch)

    def subset(self, idx: np.ndarray | slice) -> SceneParams:
        return SceneParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def mirrored(self) -> SceneParams:
        """The parameters of the left-right mirror image of this scene (eyes swapped)."""
        return replace(
            self,
            gaze_yaw=-self.gaze_yaw,
            head_yaw=-self.head_yaw,
            light_x=-self.light_x,
            face_du=-self.face_du,
            leye_du=-self.reye_du,
            leye_dv=self.reye_dv,
            reye_du=-self.leye_du,
            reye_dv=self.leye_dv,
        )


def sample_participant(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Appearance of one participant (scalars and RGB triples)."""
    tone = rng.uniform(0.25, 0.95)
    skin = np.array([0.95, 0.75, 0.62]) * tone + rng.normal(0, 0.03, 3)
    return {
        "skin": np.clip(skin, 0.05, 1.0),
        "iris": np.clip(rng.choice([np.array([0.35, 0.2, 0.1]), np.array([0.25, 0.4, 0.6]), np.array([0.3, 0.45, 0.25])]) * rng.uniform(0.6, 1.2), 0, 1),
        "brow": np.clip(skin * rng.uniform(0.2, 0.5), 0, 1),
        "face_rx": rng.uniform(72, 84),
        "face_ry": rng.uniform(92, 104),
        "eye_sep": rng.uniform(60, 70),
        "eye_w": rng.uniform(12.5, 15.5),
        "eye_h": rng.uniform(5.5, 7.5),
        "eyeball_r": rng.uniform(11.5, 13.0),
        "iris_r": rng.uniform(5.3, 6.3),
        "pupil_r": rng.uniform(1.8, 2.6),
    }


def sample_params(rng: np.random.Generator, n: int, participant: dict[str, np.ndarray]) -> SceneParams:
    """``n`` samples of one participant: gaze roughly as in EVE (screen viewing), head following gaze."""
    gaze_pitch = np.clip(rng.normal(-0.05, 0.16, n), -0.5, 0.4)
    gaze_yaw = np.clip(rng.normal(0.0, 0.28, n), -0.75, 0.75)
    head_pitch = 0.4 * gaze_pitch + rng.normal(0, 0.06, n)
    head_yaw = 0.4 * gaze_yaw + rng.normal(0, 0.08, n)
    per = {k: np.broadcast_to(np.asarray(v, dtype=np.float32), (n,) + np.shape(v)).copy() for k, v in participant.items()}
    bg = rng.uniform(0.05, 0.9, (n, 1)) * rng.uniform(0.8, 1.2, (n, 3))
    jitter = rng.normal(0, 1.2, (6, n))
    return SceneParams(
        gaze_pitch=gaze_pitch.astype(np.float32),
        gaze_yaw=gaze_yaw.astype(np.float32),
        head_pitch=head_pitch.astype(np.float32),
        head_yaw=head_yaw.astype(np.float32),
        light_x=rng.uniform(-1.0, 1.0, n).astype(np.float32),
        light_y=rng.uniform(-1.0, 0.6, n).astype(np.float32),
        ambient=rng.uniform(0.25, 0.5, n).astype(np.float32),
        diffuse=rng.uniform(0.4, 0.8, n).astype(np.float32),
        background=np.clip(bg, 0, 1).astype(np.float32),
        face_du=jitter[0].astype(np.float32),
        face_dv=jitter[1].astype(np.float32),
        leye_du=jitter[2].astype(np.float32),
        leye_dv=jitter[3].astype(np.float32),
        reye_du=jitter[4].astype(np.float32),
        reye_dv=jitter[5].astype(np.float32),
        noise=rng.uniform(0.0, 0.025, n).astype(np.float32),
        **per,
    )


def _col(a: np.ndarray) -> np.ndarray:
    """(N,) -> (N, 1, 1) for broadcasting against (N, H, W) grids."""
    return a.reshape(-1, 1, 1).astype(np.float32)


def _rotate(p: SceneParams, x: float | np.ndarray, y: float | np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate head-frame points (x right, y down, w towards the camera) by head yaw, then pitch.

    A positive yaw turns the face towards the image's left, a positive pitch turns it up.
    """
    cy, sy = np.cos(p.head_yaw), np.sin(p.head_yaw)
    cp, sp = np.cos(p.head_pitch), np.sin(p.head_pitch)
    x1 = x * cy - w * sy
    w1 = x * sy + w * cy
    y1 = y * cp - w1 * sp
    w2 = y * sp + w1 * cp
    return x1, y1, w2


def gaze_direction_image(pitch: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaze direction (eye -> target) as (x right, y down, w towards the camera): minus EVE's vector."""
    return -np.cos(pitch) * np.sin(yaw), -np.sin(pitch), np.cos(pitch) * np.cos(yaw)


def eye_centres(p: SceneParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Projected eyeball centres ``{'leye': (u, v), 'reye': (u, v)}`` in face-crop units (before crop jitter).

    The subject's left eye is on the image's right (x > 0).
    """
    out = {}
    for name, side in (("leye", 1.0), ("reye", -1.0)):
        x = side * p.eye_sep / 2
        y = np.full_like(x, -14.0)
        w = np.sqrt(HEAD_R**2 - x**2 - y**2) - 10.0
        xr, yr, _ = _rotate(p, x, y, w)
        out[name] = (CENTER + xr, HEAD_V - 2.0 + yr)
    return out


def _ellipse_alpha(du: np.ndarray, dv: np.ndarray, a: np.ndarray, b: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Antialiased coverage of an axis-aligned ellipse; ``px`` is the size of a pixel in scene units."""
    e = np.sqrt((du / a) ** 2 + (dv / b) ** 2)
    return np.clip(0.5 - (e - 1.0) * np.minimum(a, b) / px, 0.0, 1.0)


def _shading(p: SceneParams, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Lambertian shading ``(N, H, W)`` of the head, treated as a sphere-like ellipsoid."""
    c = _col
    hu, hv = (U - CENTER) / c(p.face_rx), (V - HEAD_V) / c(p.face_ry)
    nz = np.sqrt(np.clip(1.0 - hu**2 - hv**2, 0.0, 1.0))
    lx, ly = c(p.light_x), c(p.light_y)
    lambert = np.clip((hu * lx + hv * ly + nz) / np.sqrt(lx**2 + ly**2 + 1.0), 0.0, 1.0)
    return c(p.ambient) + c(p.diffuse) * lambert


def _paint(base: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> np.ndarray:
    return base * (1 - alpha[..., None]) + color * alpha[..., None]


def _base_layers(p: SceneParams, U: np.ndarray, V: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Background, head, nose and mouth at scene coordinates ``(N, H, W)``; ``(N, H, W, 3)``."""
    n, c = len(p), _col
    img = p.background[:, None, None, :] * (0.85 + 0.3 * (V / FACE_SIZE))[..., None]  # symmetric gradient
    shade = _shading(p, U, V)
    skin = p.skin[:, None, None, :] * shade[..., None]
    img = _paint(img, _ellipse_alpha(U - CENTER, V - HEAD_V, c(p.face_rx), c(p.face_ry), px), skin)
    nx, ny, _ = _rotate(p, 0.0, np.full(n, 16.0), np.full(n, HEAD_R + 6.0))
    nose_a = 0.55 * _ellipse_alpha(U - c(CENTER + nx), V - c(HEAD_V + ny), c(np.full(n, 9.0)), c(np.full(n, 13.0)), px)
    img = _paint(img, nose_a, skin * 0.7)
    mx, my, _ = _rotate(p, 0.0, np.full(n, 50.0), np.sqrt(np.full(n, HEAD_R**2 - 50.0**2)))
    mouth_a = _ellipse_alpha(U - c(CENTER + mx), V - c(HEAD_V + my), c(np.full(n, 20.0)), c(np.full(n, 5.0)), px)
    return _paint(img, mouth_a, np.array([0.6, 0.25, 0.25], dtype=np.float32) * shade[..., None])


def _eye_layers(p: SceneParams, img: np.ndarray, U: np.ndarray, V: np.ndarray, px: np.ndarray, eye: str) -> np.ndarray:
    """Paint one eye (brow, lids, sclera, iris, pupil, highlight) over ``img`` ``(N, H, W, 3)``."""
    n, c = len(p), _col
    shade = _shading(p, U, V)[..., None]
    eu, ev = eye_centres(p)[eye]
    gx, gy, gw = gaze_direction_image(p.gaze_pitch, p.gaze_yaw)
    fx, fy, _ = _rotate(p, 0.0, 0.0, np.ones(n))  # the head's forward direction in the image
    # Brow above the aperture.
    brow_a = _ellipse_alpha(U - c(eu + fx * 8), V - c(ev - 14 + fy * 8), c(p.eye_w * 1.2), c(np.full(n, 2.6)), px)
    img = _paint(img, brow_a, p.brow[:, None, None, :] * shade)
    # Lid aperture on the eyeball in the head's forward direction; the upper lid follows eye-in-head pitch.
    du, dv = U - c(eu + p.eyeball_r * fx), V - c(ev + p.eyeball_r * fy)
    upper = c(p.eye_h * np.clip(1.0 + 1.2 * (fy - gy), 0.35, 1.8))
    ap_a = _ellipse_alpha(du, dv, c(p.eye_w), np.where(dv < 0, upper, c(p.eye_h)), px)
    eye_img = np.array([0.92, 0.9, 0.86], dtype=np.float32) * (0.55 + 0.45 * shade)
    # Iris and pupil: discs on the eyeball in the gaze direction, foreshortened along it.
    g_len = np.sqrt(gx**2 + gy**2)
    safe = np.maximum(g_len, 1e-6)
    ux, uy = np.where(g_len > 1e-6, gx / safe, 1.0), np.where(g_len > 1e-6, gy / safe, 0.0)
    iu, iv = U - c(eu + p.eyeball_r * gx), V - c(ev + p.eyeball_r * gy)
    t1 = iu * c(ux) + iv * c(uy)
    t2 = -iu * c(uy) + iv * c(ux)
    fore = c(np.clip(gw, 0.2, 1.0))
    r = c(p.iris_r)
    e_iris = np.sqrt((t1 / (r * fore)) ** 2 + (t2 / r) ** 2)
    iris_a = np.clip(0.5 - (e_iris - 1.0) * r * fore / px, 0.0, 1.0)
    pupil_a = np.clip(0.5 - (e_iris * r / c(p.pupil_r) - 1.0) * c(p.pupil_r) * fore / px, 0.0, 1.0)
    limbus = np.clip(e_iris, 0, 1)[..., None] ** 4
    eye_img = _paint(eye_img, iris_a, p.iris[:, None, None, :] * (1.0 - 0.5 * limbus) * (0.5 + 0.5 * shade))
    eye_img = _paint(eye_img, pupil_a, np.full(3, 0.03, dtype=np.float32))
    # Corneal highlight: offset towards the light.
    hu, hv = iu - c(2.5 * p.light_x), iv - c(2.5 * p.light_y)
    hl_a = 0.9 * _ellipse_alpha(hu, hv, c(np.full(n, 1.1)), c(np.full(n, 1.1)), px) * iris_a
    eye_img = _paint(eye_img, hl_a, np.ones(3, dtype=np.float32))
    return _paint(img, ap_a, eye_img)


def _grid(size: int, cu: np.ndarray, cv: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre scene coordinates ``(N, size, size)`` of crops of ``span`` units centred at (cu, cv)."""
    px = span / size
    t = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * px
    U = cu.reshape(-1, 1, 1) + t.reshape(1, 1, -1)
    V = cv.reshape(-1, 1, 1) + t.reshape(1, -1, 1)
    U, V = np.broadcast_arrays(U, V)
    return U.astype(np.float32), V.astype(np.float32), np.full((len(cu), 1, 1), px, dtype=np.float32)


def render_face(p: SceneParams) -> np.ndarray:
    """The face crop ``(N, 224, 224, 3)`` float32 in [0, 1], without noise.

    The eyes are small in the face crop, so their layers are evaluated only in an ``EYE_WINDOW``-pixel
    window around each eye (it holds every pixel they cover), which makes rendering ~5x faster.
    """
    n = len(p)
    U, V, px = _grid(FACE_SIZE, CENTER + p.face_du, CENTER + p.face_dv, float(FACE_SIZE))
    img = _base_layers(p, U, V, px)
    rows = np.arange(n)[:, None, None]
    t = np.arange(EYE_WINDOW)
    for eye, (eu, ev) in eye_centres(p).items():
        # Face-crop pixels have unit size, so pixel (i, j) sits at scene (u0 + j + 0.5, v0 + i + 0.5).
        j0 = np.clip(np.round(eu - (CENTER + p.face_du - FACE_SIZE / 2) - EYE_WINDOW / 2), 0, FACE_SIZE - EYE_WINDOW).astype(int)
        i0 = np.clip(np.round(ev - (CENTER + p.face_dv - FACE_SIZE / 2) - EYE_WINDOW / 2), 0, FACE_SIZE - EYE_WINDOW).astype(int)
        ii = i0[:, None, None] + t[None, :, None]
        jj = j0[:, None, None] + t[None, None, :]
        img[rows, ii, jj] = _eye_layers(p, img[rows, ii, jj], U[rows, ii, jj], V[rows, ii, jj], px, eye)
    return np.clip(img, 0.0, 1.0)


def render_eye(p: SceneParams, eye: str) -> np.ndarray:
    """The crop ``(N, 112, 112, 3)`` float32 in [0, 1] of ``eye`` (``'leye'`` or ``'reye'``), without noise."""
    eu, ev = eye_centres(p)[eye]
    U, V, px = _grid(EYE_SIZE, eu + getattr(p, f"{eye}_du"), ev + getattr(p, f"{eye}_dv"), EYE_CROP_SPAN)
    # The crop spans +-26 units around its eye, the other eye is >= 60 units away: only this eye shows.
    return np.clip(_eye_layers(p, _base_layers(p, U, V, px), U, V, px, eye), 0.0, 1.0)


def render_sample(p: SceneParams, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Render face ``(N, 224, 224, 3)`` and eye ``(N, 112, 112, 3)`` crops as uint8; noise from ``rng``.

    Returns ``{'face', 'leye', 'reye'}`` and ``'gaze'`` ``(N, 2)`` pitch/yaw radians. Without ``rng`` no
    noise is added (used by tests that compare renderings exactly).
    """
    crops = {"face": render_face(p), "leye": render_eye(p, "leye"), "reye": render_eye(p, "reye")}
    out = {}
    for name, img in crops.items():
        if rng is not None:
            img = img + p.noise.reshape(-1, 1, 1, 1) * rng.standard_normal(img.shape, dtype=np.float32)
        out[name] = (np.clip(img, 0, 1) * 255.0).round().astype(np.uint8)
    out["gaze"] = np.stack([p.gaze_pitch, p.gaze_yaw], axis=1).astype(np.float32)
    return out


def make_synthetic(
    out: str | Path,
    *,
    train_participants: int = 4,
    val_participants: int = 2,
    samples_per_participant: int = 64,
    seed: int = 0,
    camera: str = "basler",
    chunk: int = 32,
) -> list[Path]:
    """Write synthetic participants in the training format: ``out/{train,val}/participant_<split><k>/``.

    Participant ``k`` of a split is drawn from ``(seed, split, k)`` alone, so adding participants does
    not change the existing ones. Returns the written files.
    """
    if train_participants < 1 or val_participants < 0 or samples_per_participant < 1:
        raise ValueError("make_synthetic needs at least one training participant and one sample per participant")
    out = Path(out)
    written = []
    jobs = [("train", k) for k in range(train_participants)] + [("val", k) for k in range(val_participants)]
    for split, k in progress(jobs, desc="synthetic participants"):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, k])
        appearance = sample_participant(rng)
        params = sample_params(rng, samples_per_participant, appearance)
        path = out / split / f"{PARTICIPANT_PREFIX}{split}{k + 1:02d}" / h5_name(camera)
        with H5Writer(path) as w:
            for start in range(0, samples_per_participant, chunk):
                s = render_sample(params.subset(slice(start, start + chunk)), rng)
                w.append(s["face"], s["leye"], s["reye"], s["gaze"])
        written.append(path)
    _log.info("wrote %d synthetic participant files (%d samples each) under %s", len(written), samples_per_participant, out)
    return written
