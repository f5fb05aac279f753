"""Synthetic participants: rendered face and eye crops whose gaze is known exactly, and camera images.

A participant is a head (a shaded ellipse with brows, eye sockets, a lit nose bridge, nose and mouth on a
sphere of radius ``HEAD_R``) with two eyeballs. The scene is what the virtual camera of data
normalization sees (one scene unit = one face-crop pixel = 1 mm at the face centre with the default
normalization). For each sample the head is rotated by pitch, then yaw (no roll: data normalization
removes it) and the eyes look along the gaze direction, in the convention of ``gaze_estimation.geometry``:

* the eyelid aperture sits on the eyeball in the head's forward direction, so it moves with the head;
* the iris sits on the eyeball in the gaze direction ``-pitchyaw_to_vector(gaze)``, projected
  orthographically (x right, y down) and foreshortened by the angle to the camera;
* a look up raises the upper lid, a look down lowers it;
* Lambertian shading from a random light direction, a corneal highlight that follows the light, random
  background, small crop misalignment and Gaussian sensor noise.

Face and eye crops are renderings of the same scene: the face crop covers 224 x 224 scene units centred
on the head-attached face centre ``FACE_CENTRE`` (as data normalization centres it), each eye crop a
square of ``EYE_CROP_SPAN`` units centred on its eyeball, sampled at 112 x 112. Everything is vectorized
over samples (numpy, float32).

``render_camera`` puts the scene into a real camera's image with a known face position and head roll
(each pixel shows the scene point that normalization warps it to), with the truth in camera coordinates,
for ``predict-raw``'s tests and ``make-synthetic --camera-images``.

The scene is symmetric under a left-right mirror with yaw, head yaw and light x negated and the eyes
swapped, which is what the flip test relies on.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image

from perception_shared.logging import get_logger, progress

from .h5format import EYE_SIZE, FACE_SIZE, PARTICIPANT_PREFIX, H5Writer, h5_name

HEAD_R = 88.0  # head sphere radius, scene units (1 unit = 1 face-crop pixel)
EYE_CROP_SPAN = 52.0  # scene units covered by an eye crop
CENTER = FACE_SIZE / 2.0
HEAD_V = CENTER + 10.0  # vertical centre of the head ellipse
EYE_WINDOW = 60  # face-crop pixels around an eye that its layers can touch
# The face centre of data normalization, in the head frame (x right, y down, w towards the camera, scene
# units = mm, relative to the head's rotation centre): 6 mm below the midpoint of the eyeball centres
# (which sit at y = -16, w ~ 70.5). The face crop is centred on it, as data normalization centres it.
EYE_Y = -16.0  # height of the eyeball centres in the head frame
FACE_CENTRE = (0.0, EYE_Y + 6.0, 70.5)
SOCKET_SHADOW = 0.5  # darkening of the eye sockets at their centre

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
    openness: np.ndarray  # 1: eyes open, 0: closed (a blink: the lids hide iris and pupil)

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
        openness=np.ones(n, dtype=np.float32),
        **per,
    )


def _col(a: np.ndarray) -> np.ndarray:
    """(N,) -> (N, 1, 1) for broadcasting against (N, H, W) grids."""
    return a.reshape(-1, 1, 1).astype(np.float32)


def _rotate(p: SceneParams, x: float | np.ndarray, y: float | np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate head-frame points (x right, y down, w towards the camera) by head pitch, then yaw.

    The head's forward direction ``(0, 0, 1)`` becomes ``gaze_direction_image(head_pitch, head_yaw)``: a
    positive yaw turns the face towards the image's left, a positive pitch turns it up, in the gaze
    convention. Pitching first keeps the head's x axis horizontal: the head has no roll in the sense of
    data normalization (Zhang et al. 2018), which is what a normalized crop shows.
    """
    cy, sy = np.cos(p.head_yaw), np.sin(p.head_yaw)
    cp, sp = np.cos(p.head_pitch), np.sin(p.head_pitch)
    y1 = y * cp - w * sp
    w1 = y * sp + w * cp
    return x * cy - w1 * sy, y1, x * sy + w1 * cy


def head_rotation(p: SceneParams) -> np.ndarray:
    """``(N, 3, 3)`` rotation of ``_rotate`` in camera axes (x right, y down, z away from the camera).

    Its columns are the head's axes: x towards the subject's left, y down, z into the head (the face
    looks along ``-z``), as in the head frames of data normalization.
    """
    n = len(p)
    cols = []
    for axis in np.eye(3):
        x, y, w = _rotate(p, np.full(n, axis[0]), np.full(n, axis[1]), np.full(n, -axis[2]))
        cols.append(np.stack([x, y, -w], axis=1))
    return np.stack(cols, axis=2)


def gaze_direction_image(pitch: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaze direction (eye -> target) as (x right, y down, w towards the camera): minus EVE's vector."""
    return -np.cos(pitch) * np.sin(yaw), -np.sin(pitch), np.cos(pitch) * np.cos(yaw)


def _eye_depth(sep: float | np.ndarray) -> float | np.ndarray:
    """``w`` of the eyeball centres (towards the camera from the rotation centre) for an eye separation."""
    return np.sqrt(HEAD_R**2 - (sep / 2) ** 2 - 14.0**2) - 10.0


_NOSE = (0.0, 22.0, HEAD_R + 6.0)  # where the nose's shadow is drawn, head frame
_MOUTH = (0.0, 50.0, float(np.sqrt(HEAD_R**2 - 50.0**2)))


def eye_centres(p: SceneParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Projected eyeball centres ``{'leye': (u, v), 'reye': (u, v)}`` in face-crop units (before crop jitter).

    The subject's left eye is on the image's right (x > 0).
    """
    out = {}
    for name, side in (("leye", 1.0), ("reye", -1.0)):
        x = side * p.eye_sep / 2
        w = _eye_depth(p.eye_sep)
        xr, yr, _ = _rotate(p, x, np.full_like(x, EYE_Y), w)
        out[name] = (CENTER + xr, HEAD_V + yr)
    return out


def face_centre_image(p: SceneParams) -> tuple[np.ndarray, np.ndarray]:
    """Projected face centre ``(u, v)`` in scene units (the centre of the face crop before its jitter)."""
    n = len(p)
    x, y, _ = _rotate(p, np.full(n, FACE_CENTRE[0]), np.full(n, FACE_CENTRE[1]), np.full(n, FACE_CENTRE[2]))
    return CENTER + x, HEAD_V + y


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
    img = p.background[:, None, None, :] * (0.85 + 0.3 * np.clip(V / FACE_SIZE, 0.0, 1.0))[..., None]  # symmetric gradient
    shade = _shading(p, U, V)
    skin = p.skin[:, None, None, :] * shade[..., None]
    img = _paint(img, _ellipse_alpha(U - CENTER, V - HEAD_V, c(p.face_rx), c(p.face_ry), px), skin)
    # Nose: a lit bridge from between the eyes down to the tip, and a shadow under it.
    bx, by, _ = _rotate(p, 0.0, np.full(n, 0.0), np.full(n, HEAD_R + 2.0))
    bridge_a = 0.6 * _ellipse_alpha(U - c(CENTER + bx), V - c(HEAD_V + by), c(np.full(n, 6.0)), c(np.full(n, 20.0)), px)
    img = _paint(img, bridge_a, np.clip(skin * 1.2, 0.0, 1.0))
    nx, ny, _ = _rotate(p, *(np.full(n, a) for a in _NOSE))
    nose_a = 0.6 * _ellipse_alpha(U - c(CENTER + nx), V - c(HEAD_V + ny), c(np.full(n, 10.0)), c(np.full(n, 4.0)), px)
    img = _paint(img, nose_a, skin * 0.5)
    mx, my, _ = _rotate(p, *(np.full(n, a) for a in _MOUTH))
    mouth_a = _ellipse_alpha(U - c(CENTER + mx), V - c(HEAD_V + my), c(np.full(n, 20.0)), c(np.full(n, 5.0)), px)
    return _paint(img, mouth_a, np.array([0.6, 0.25, 0.25], dtype=np.float32) * shade[..., None])


def _eye_layers(p: SceneParams, img: np.ndarray, U: np.ndarray, V: np.ndarray, px: np.ndarray, eye: str) -> np.ndarray:
    """Paint one eye (brow, lids, sclera, iris, pupil, highlight) over ``img`` ``(N, H, W, 3)``."""
    n, c = len(p), _col
    shade = _shading(p, U, V)[..., None]
    eu, ev = eye_centres(p)[eye]
    gx, gy, gw = gaze_direction_image(p.gaze_pitch, p.gaze_yaw)
    fx, fy, _ = _rotate(p, 0.0, 0.0, np.ones(n))  # the head's forward direction in the image
    # Eye socket: a soft shadow around the aperture. Real faces have it; face detectors (Haar cascades)
    # look for this dark band across the eyes below a bright forehead and beside a bright nose bridge.
    su, sv = (U - c(eu + 6 * fx)) / c(1.4 * p.eye_w), (V - c(ev - 3 + 6 * fy)) / c(2.2 * p.eye_h)
    img = img * (1.0 - SOCKET_SHADOW * np.clip(1.0 - su**2 - sv**2, 0.0, 1.0))[..., None]
    # Brow above the aperture.
    brow_a = _ellipse_alpha(U - c(eu + fx * 8), V - c(ev - 14 + fy * 8), c(p.eye_w * 1.2), c(np.full(n, 2.6)), px)
    img = _paint(img, brow_a, p.brow[:, None, None, :] * shade)
    # Lid aperture on the eyeball in the head's forward direction; the upper lid follows eye-in-head pitch.
    du, dv = U - c(eu + p.eyeball_r * fx), V - c(ev + p.eyeball_r * fy)
    upper = c(p.eye_h * np.clip(1.0 + 1.2 * (fy - gy), 0.35, 1.8))
    ap_a = _ellipse_alpha(du, dv, c(p.eye_w), np.where(dv < 0, upper, c(p.eye_h)), px) * c(p.openness)
    # Lash line: a dark rim along the upper lid (2 units thick), drawn under the aperture.
    lash_a = 0.85 * _ellipse_alpha(du, dv - 1.0, c(p.eye_w + 1.5), np.where(dv < 1.0, upper + 2.0, c(p.eye_h)), px)
    # Closed lids (a blink) leave only the lash line where the lids meet.
    closed_a = 0.85 * _ellipse_alpha(du, dv, c(p.eye_w + 1.5), c(np.full(n, 1.2)), px)
    lash_a = lash_a * c(p.openness) + closed_a * c(1.0 - p.openness)
    img = _paint(img, lash_a, np.full(3, 0.08, dtype=np.float32))
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
    fu, fv = face_centre_image(p)
    cu, cv = fu + p.face_du, fv + p.face_dv
    U, V, px = _grid(FACE_SIZE, cu, cv, float(FACE_SIZE))
    img = _base_layers(p, U, V, px)
    rows = np.arange(n)[:, None, None]
    t = np.arange(EYE_WINDOW)
    for eye, (eu, ev) in eye_centres(p).items():
        # Face-crop pixels have unit size, so pixel (i, j) sits at scene (u0 + j + 0.5, v0 + i + 0.5).
        j0 = np.clip(np.round(eu - (cu - FACE_SIZE / 2) - EYE_WINDOW / 2), 0, FACE_SIZE - EYE_WINDOW).astype(int)
        i0 = np.clip(np.round(ev - (cv - FACE_SIZE / 2) - EYE_WINDOW / 2), 0, FACE_SIZE - EYE_WINDOW).astype(int)
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


def _noisy_uint8(img: np.ndarray, noise: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """``(N, H, W, 3)`` float in [0, 1] -> uint8, with per-sample Gaussian noise of std ``noise`` from ``rng``."""
    if rng is not None:
        img = img + noise.reshape(-1, 1, 1, 1) * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) * 255.0).round().astype(np.uint8)


def render_sample(p: SceneParams, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Render face ``(N, 224, 224, 3)`` and eye ``(N, 112, 112, 3)`` crops as uint8; noise from ``rng``.

    Returns ``{'face', 'leye', 'reye'}`` and ``'gaze'`` ``(N, 2)`` pitch/yaw radians. Without ``rng`` no
    noise is added (used by tests that compare renderings exactly).
    """
    crops = {"face": render_face(p), "leye": render_eye(p, "leye"), "reye": render_eye(p, "reye")}
    out = {name: _noisy_uint8(img, p.noise, rng) for name, img in crops.items()}
    out["gaze"] = np.stack([p.gaze_pitch, p.gaze_yaw], axis=1).astype(np.float32)
    return out


def landmark_positions(p: SceneParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Projected landmarks ``(u, v)`` in scene units: ``right_eye``, ``left_eye`` (eyeball centres), ``nose``, ``mouth``."""
    n = len(p)
    eyes = eye_centres(p)
    out = {"right_eye": eyes["reye"], "left_eye": eyes["leye"]}
    for name, (x, y, w) in (("nose", _NOSE), ("mouth", _MOUTH)):
        xr, yr, _ = _rotate(p, np.full(n, x), np.full(n, y), np.full(n, w))
        out[name] = (CENTER + xr, HEAD_V + yr)
    return out


def synthetic_face_model(sep: float = 65.0) -> dict[str, tuple[float, float, float]]:
    """The landmarks of ``landmark_positions`` in the face-model frame (mm), for an eye separation ``sep``.

    Frame of data normalization's face models: origin midway between the eye centres, x towards the
    subject's left, y down, z into the head (so ``z = -(w - w_eyes)``). The default is the mean of
    ``sample_participant``'s eye separations.
    """
    we = float(_eye_depth(sep))
    points = {"right_eye": (-sep / 2, EYE_Y, we), "left_eye": (sep / 2, EYE_Y, we), "nose": _NOSE, "mouth": _MOUTH}
    return {k: (round(x, 2), round(y - EYE_Y, 2), round(we - w, 2)) for k, (x, y, w) in points.items()}


# The synthetic head's landmarks in millimetres, for head-pose estimation on its renders (with the
# default normalization, one scene unit is one millimetre).
SYNTHETIC_FACE_MODEL = {
    **synthetic_face_model(),
    # The ends of what the renderer draws, for a mean participant (eye_sep 65, eye_w 14, eyeball_r 12.25),
    # in the same frame: the eye openings' corners (an opening sits eyeball_r in front of its eyeball's
    # centre, eye_w to either side), the brows' ends and tops (8 in front of and 14 above the eyeball's
    # centre, 1.2 eye_w to either side, 2.6 high), the nose shadow's ends and the mouth's corners (10 and 20
    # beside their centres): points that do not follow the iris, for PnP (landmarks.eye_centres: face_model).
    "right_eye_outer": (-46.5, 0.0, -12.25),
    "right_eye_inner": (-18.5, 0.0, -12.25),
    "left_eye_inner": (18.5, 0.0, -12.25),
    "left_eye_outer": (46.5, 0.0, -12.25),
    "right_brow_outer": (-49.3, -14.0, -8.0),
    "right_brow": (-32.5, -16.6, -8.0),
    "right_brow_inner": (-15.7, -14.0, -8.0),
    "left_brow_inner": (15.7, -14.0, -8.0),
    "left_brow": (32.5, -16.6, -8.0),
    "left_brow_outer": (49.3, -14.0, -8.0),
    "nose_right": (-10.0, 38.0, -23.43),
    "nose_left": (10.0, 38.0, -23.43),
    "mouth_right": (-20.0, 66.0, -1.84),
    "mouth_left": (20.0, 66.0, -1.84),
}


@dataclass
class CameraRender:
    """Camera images of synthetic faces and their truth: camera coordinates (OpenCV axes), mm, radians."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    camera_matrix: np.ndarray  # (3, 3)
    rotation: np.ndarray  # (N, 3, 3) the normalizing rotation R of each face (rows: virtual camera axes)
    face_centre: np.ndarray  # (N, 3) mm
    head_rotation: np.ndarray  # (N, 3, 3) columns: the head's x, y, z axes in camera coordinates
    gaze: np.ndarray  # (N, 2) pitch/yaw in the camera's coordinates
    gaze_normalized: np.ndarray  # (N, 2) pitch/yaw of the virtual camera (the crops' label)
    landmarks: dict[str, np.ndarray]  # name -> (N, 2) image pixels (OpenCV pixel-centre coordinates)
    params: SceneParams  # the scenes (render_sample(params) gives the crops the true normalization yields)


def render_camera(
    p: SceneParams,
    *,
    camera_matrix: np.ndarray,
    image_size: tuple[int, int],
    face_centre: np.ndarray,
    roll: np.ndarray,
    focal_norm: float = 600.0,
    distance_norm: float = 600.0,
    rng: np.random.Generator | None = None,
) -> CameraRender:
    """Render the scenes ``p`` as a real camera sees them: face centre ``(N, 3)`` mm, head roll ``(N,)`` rad.

    The scene of ``p`` is what the virtual camera of data normalization (``focal_norm``,
    ``distance_norm``; one scene unit is one of its pixels) sees. The virtual camera looks at the face
    centre; ``roll`` turns it about that line, so the head appears rolled by ``roll`` in the camera
    image, and ``p``'s head pitch/yaw are relative to the virtual camera. Each camera pixel shows the
    scene point that normalization would warp it to (the inverse of the normalization homography): the
    face is the plane through its centre that normalization itself assumes, and normalizing the image
    with the true pose gives back ``render_sample``'s face crop (without its jitter). ``image_size`` is
    ``(width, height)``.
    """
    n = len(p)
    k = np.asarray(camera_matrix, dtype=np.float64)
    f = np.asarray(face_centre, dtype=np.float64).reshape(n, 3)
    dist = np.linalg.norm(f, axis=1)
    # The virtual camera's axes, built here from the face direction and the roll (independently of
    # normalization.normalizing_rotation, which the tests check against this).
    z = f / dist[:, None]
    x0 = np.array([1.0, 0.0, 0.0]) - z[:, :1] * z
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    y0 = np.cross(z, x0)
    x = np.cos(roll)[:, None] * x0 + np.sin(roll)[:, None] * y0
    rot = np.stack([x, np.cross(z, x), z], axis=1)
    c = (FACE_SIZE - 1) / 2.0
    k_norm = np.array([[focal_norm, 0.0, c], [0.0, focal_norm, c], [0.0, 0.0, 1.0]])
    scale = np.zeros((n, 3, 3))
    scale[:, 0, 0] = scale[:, 1, 1] = 1.0
    scale[:, 2, 2] = distance_norm / dist
    warp = k_norm @ scale @ rot @ np.linalg.inv(k)
    width, height = image_size
    jj, ii = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    q = np.einsum("nij,hwj->nhwi", warp, np.stack([jj, ii, np.ones_like(jj)], axis=-1))
    fu, fv = face_centre_image(p)
    U = (fu[:, None, None] + q[..., 0] / q[..., 2] - c).astype(np.float32)
    V = (fv[:, None, None] + q[..., 1] / q[..., 2] - c).astype(np.float32)
    px = (focal_norm / k[0, 0] * dist / distance_norm).reshape(n, 1, 1).astype(np.float32)  # scene units per pixel
    img = _base_layers(p, U, V, px)
    for eye in ("leye", "reye"):
        img = _eye_layers(p, img, U, V, px, eye)
    inv = np.linalg.inv(warp)
    landmarks = {}
    for name, (u, v) in landmark_positions(p).items():
        h = np.einsum("nij,nj->ni", inv, np.stack([u - fu + c, v - fv + c, np.ones(n)], axis=1))
        landmarks[name] = h[:, :2] / h[:, 2:]
    # Gaze: the label is a direction of the virtual camera; the camera sees it rotated by R^T.
    gp, gy = p.gaze_pitch.astype(np.float64), p.gaze_yaw.astype(np.float64)
    v_norm = np.stack([np.cos(gp) * np.sin(gy), np.sin(gp), np.cos(gp) * np.cos(gy)], axis=1)
    v_cam = np.einsum("nji,nj->ni", rot, v_norm)
    gaze = np.stack([np.arcsin(np.clip(v_cam[:, 1], -1, 1)), np.arctan2(v_cam[:, 0], v_cam[:, 2])], axis=1)
    return CameraRender(
        images=_noisy_uint8(img, p.noise, rng),
        camera_matrix=k,
        rotation=rot,
        face_centre=f,
        head_rotation=np.swapaxes(rot, 1, 2) @ head_rotation(p),
        gaze=gaze,
        gaze_normalized=np.stack([gp, gy], axis=1),
        landmarks=landmarks,
        params=p,
    )


def random_camera_faces(
    rng: np.random.Generator,
    n: int,
    *,
    image_size: tuple[int, int] = (400, 320),
    focal_px: float = 500.0,
    distance_mm: tuple[float, float] = (450.0, 650.0),
    max_roll_deg: float = 15.0,
    participants: int = 4,
    noise: bool = True,
) -> CameraRender:
    """``n`` camera images of ``participants`` random synthetic people (round robin) with known truth.

    The face centre is drawn at ``distance_mm`` and anywhere that keeps the face in the image, the head
    roll uniformly within ``max_roll_deg``; head pitch/yaw and gaze as in ``sample_params``. The camera
    has square pixels, ``focal_px`` and its principal point at the image centre.
    """
    people = [sample_participant(rng) for _ in range(participants)]
    parts = [sample_params(rng, 1, people[i % participants]) for i in range(n)]
    p = SceneParams(**{f.name: np.concatenate([getattr(q, f.name) for q in parts]) for f in fields(SceneParams)})
    width, height = image_size
    k = np.array([[focal_px, 0.0, (width - 1) / 2], [0.0, focal_px, (height - 1) / 2], [0.0, 0.0, 1.0]])
    z = rng.uniform(*distance_mm, n)
    margin = 130.0  # mm around the face centre that stay inside the image
    x = rng.uniform(-1, 1, n) * np.maximum(z * (width / 2 - 10) / focal_px - margin, 0.0)
    y = rng.uniform(-1, 1, n) * np.maximum(z * (height / 2 - 10) / focal_px - margin, 0.0)
    roll = np.radians(rng.uniform(-max_roll_deg, max_roll_deg, n))
    return render_camera(
        p, camera_matrix=k, image_size=image_size, face_centre=np.stack([x, y, z], axis=1), roll=roll, rng=rng if noise else None
    )


# A screen like EVE's (25", 1920 x 1080 px, 553 x 311 mm) with the camera above its top edge, tilted
# 5 degrees down, looking at the viewer: the calibration that make_camera_images writes.
SCREEN_PX = (1920, 1080)
SCREEN_MM = (553.0, 311.0)


def synthetic_calibration(camera_matrix: np.ndarray) -> dict[str, list]:
    """Calibration fields (EVE's names, see ``screen``) for the synthetic screen and ``camera_matrix``.

    Screen frame: x to the viewer's right, y down, z into the screen, mm from its top-left corner. The
    camera faces the viewer, so its x (image right) is the screen's -x and its z the screen's -z.
    """
    tilt = np.radians(5.0)
    facing = np.diag([-1.0, 1.0, -1.0])
    pitch_down = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]])
    rot = pitch_down @ facing
    centre = np.array([SCREEN_MM[0] / 2, -15.0, 0.0])  # the camera, in screen coordinates
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, -rot @ centre
    ppm = [SCREEN_PX[0] / SCREEN_MM[0], SCREEN_PX[1] / SCREEN_MM[1]]
    return {
        "camera_matrix": np.asarray(camera_matrix).tolist(),
        "camera_transformation": t.tolist(),
        "inv_camera_transformation": np.linalg.inv(t).tolist(),
        "pixels_per_millimeter": ppm,
        "millimeters_per_pixel": [1 / v for v in ppm],
        "screen_size_px": list(SCREEN_PX),
    }


def make_camera_images(out: str | Path, n: int, *, seed: int = 0, image_size: tuple[int, int] = (640, 480), focal_px: float = 600.0) -> Path:
    """Write ``n`` camera images of rendered faces (``out/NNNN.png``), their truth and a calibration.

    ``out/truth.csv``: ``file,face_x_mm,face_y_mm,face_z_mm,roll_deg,pitch,yaw,norm_pitch,norm_yaw,
    head_pitch,head_yaw`` (gaze in the camera's coordinates and in the virtual camera, radians; head
    pitch/yaw relative to the virtual camera); ``out/calibration.json`` (``synthetic_calibration``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    render = random_camera_faces(rng, n, image_size=image_size, focal_px=focal_px, distance_mm=(450.0, 700.0))
    with open(out / "truth.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "face_x_mm", "face_y_mm", "face_z_mm", "roll_deg", "pitch", "yaw", "norm_pitch", "norm_yaw", "head_pitch", "head_yaw"])
        for i in range(n):
            name = f"{i:04d}.png"
            Image.fromarray(render.images[i]).save(out / name)
            hz = render.rotation[i] @ render.head_rotation[i][:, 2]  # the head's z axis (into it) in the virtual camera
            x_axis = render.rotation[i, 0]
            roll = np.degrees(np.arctan2(x_axis[1], x_axis[0]))
            w.writerow([
                name, *(f"{v:.3f}" for v in render.face_centre[i]), f"{roll:.3f}",
                *(f"{v:.6f}" for v in (*render.gaze[i], *render.gaze_normalized[i])),
                f"{np.arcsin(hz[1]):.6f}", f"{np.arctan2(hz[0], hz[2]):.6f}",
            ])
    (out / "calibration.json").write_text(json.dumps(synthetic_calibration(render.camera_matrix), indent=1))
    _log.info("wrote %d camera images, truth.csv and calibration.json under %s", n, out)
    return out


def participant_jobs(
    out: str | Path, train: int, val: int, camera: str, seed: int, streams: tuple[int, int] = (0, 1)
) -> list[tuple[np.random.Generator, Path]]:
    """Each participant's RNG and file: ``out/<split>/participant_<split><k>/frames_<camera>.h5``.

    Participant ``k`` of a split draws from ``(seed, stream of the split, k)`` alone, so adding
    participants does not change the existing ones; another generator passes its own ``streams``.
    """
    jobs = [("train", k) for k in range(train)] + [("val", k) for k in range(val)]
    return [
        (np.random.default_rng([seed, streams[0] if split == "train" else streams[1], k]), Path(out) / split / f"{PARTICIPANT_PREFIX}{split}{k + 1:02d}" / h5_name(camera))
        for split, k in jobs
    ]


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
    written = []
    for rng, path in progress(participant_jobs(out, train_participants, val_participants, camera, seed), desc="synthetic participants"):
        appearance = sample_participant(rng)
        params = sample_params(rng, samples_per_participant, appearance)
        with H5Writer(path) as w:
            for start in range(0, samples_per_participant, chunk):
                s = render_sample(params.subset(slice(start, start + chunk)), rng)
                w.append(s["face"], s["leye"], s["reye"], s["gaze"])
        written.append(path)
    _log.info("wrote %d synthetic participant files (%d samples each) under %s", len(written), samples_per_participant, out)
    return written
