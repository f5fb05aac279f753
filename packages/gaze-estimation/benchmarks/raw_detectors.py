"""How much each face/landmark detector costs predict-raw on rendered camera images with known truth.

    python benchmarks/raw_detectors.py --run RUN --out raw_detectors.json [--n 60] [--cnn]

RUN: a run trained on ``make-synthetic`` data (its normalization is the renderer's). On ``n`` camera
images of random synthetic people (head roll within 15 degrees, faces anywhere in a 640 x 480 image,
450-700 mm away), the same model's gaze error in the camera's coordinates, by how the face was normalized:

* ``ideal``: the renderer's own crops (what the model was trained on), de-normalized with the true rotation;
* ``true pose``: the camera image normalized with the true face centre and rotation (the normalization alone);
* ``landmarks (stand-in)``: the true landmark positions (eye centres, nose, mouth) with PnP against the mean
  synthetic face model: what a perfect landmark model such as MediaPipe's would give (MediaPipe itself
  cannot be installed or downloaded here, so it is not measured);
* ``dlib``: dlib's HOG face detector and 68-point landmark model, the default (upsampling 1, the image
  also searched turned by +-15 degrees when no face is found upright); also without upsampling, without the
  roll search, and (``--cnn``) with dlib's CNN face detector (without upsampling: slow on a CPU); with the
  eye crops centred on the face model's eye centres placed by the head pose fitted to dlib's other points
  (``landmarks.eye_centres: face_model``); and, to tell where dlib's error comes from, dlib's faces with the
  eye centres replaced by the rendered ones, with the rendered ones moved by dlib's own errors on another
  face (the same spread, no tie to this face's gaze) or by Gaussian errors of 1 and 2 px, and with them
  moved to the iris (the darkest pixels between the eye corners). The default dlib detector runs once:
  these rows reuse its faces;
* ``haar``: OpenCV's Haar cascades.

Also the detection rates, the landmark error (the eye centres the crops are centred on against the rendered
eyeball centres, pixels; the nose and mouth points against the renderer's), the head-pose error (the angle between the estimated and
the true head rotation, PnP against the mean synthetic face model) and the normalizing rotation's error.
Writes JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from gaze_estimation.evaluate import load_model
from gaze_estimation.face_detection import DlibDetector
from gaze_estimation.landmarks import EYES, FaceLandmarks, HaarDetector, load_face_model
from gaze_estimation.metrics import per_sample_errors
from gaze_estimation.normalization import crop_warp, denormalize_gaze, face_warp, transform_points, warp_crop
from gaze_estimation.raw import Frame, RawGazePredictor
from gaze_estimation.synthetic import random_camera_faces, render_sample
from perception_shared.plotting import plt

JITTER = ("face_du", "face_dv", "leye_du", "leye_dv", "reye_du", "reye_dv")


def rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory or checkpoint of a model trained on synthetic data")
    parser.add_argument("--out", required=True, help="output JSON (a PNG is written beside it)")
    parser.add_argument("--n", type=int, default=60, help="camera images (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cnn", action="store_true", help="also dlib's CNN face detector, without upsampling (~2-3 s per frame on one CPU core)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    model, cfg, _ = load_model(run / "best_model.pth" if run.is_dir() else run)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    r = random_camera_faces(rng, args.n, image_size=(640, 480), focal_px=600.0, distance_mm=(450.0, 700.0), participants=args.n)
    render_s = time.time() - t0
    face_model = load_face_model("synthetic")
    norm = cfg.normalization

    ideal = render_sample(dataclasses.replace(r.params, **{k: np.zeros(args.n, np.float32) for k in JITTER}))
    with torch.no_grad():
        x = [torch.from_numpy(ideal[k]).permute(0, 3, 1, 2).float().div(255) for k in ("face", "leye", "reye")]
        g_ideal = denormalize_gaze(model(*x).double().numpy(), r.rotation)
    results: dict[str, dict] = {"ideal": {"found": args.n, "error_deg": per_sample_errors(g_ideal, r.gaze).tolist()}}

    frames = [Frame(f"render{i}", i, None, r.images[i]) for i in range(args.n)]

    def stand_in(names):
        """STAND-IN for a landmark model: the true landmark positions, frame by frame."""
        frame = iter(range(args.n))

        def detect(img: np.ndarray) -> list[FaceLandmarks]:
            i = next(frame)
            # the renderer's nose is the base of its nose: nose_base in the synthetic face model
            points = {("nose_base" if k == "nose" else k): tuple(r.landmarks[k][i]) for k in names}
            return [FaceLandmarks((0.0, 0.0, 1.0, 1.0), points, "stand-in")]

        return detect

    def with_true_eyes(detector, offset=lambda i, eye: np.zeros(2)):
        """DIAGNOSIS: a detector's faces with the eye centres replaced by the rendered eyeball centres, each
        moved by ``offset(image index, eye)`` pixels."""
        frame = iter(range(args.n))

        def detect(img: np.ndarray) -> list[FaceLandmarks]:
            i = next(frame)
            faces = detector(img)[:1]
            eyes = {k: tuple(r.landmarks[k][i] + offset(i, k)) for k in EYES} if faces else {}
            return [dataclasses.replace(f, points={**f.points, **eyes}) for f in faces]

        return detect

    def dlib_offsets_of_another_face():
        """DIAGNOSIS: the default dlib's eye-centre errors, each given to another face it finds (a fixed random
        pairing, scaled by the two faces' distances): the same spread of errors, no longer tied to the gaze."""
        dist = np.linalg.norm(r.face_centre, axis=1)

        @functools.cache
        def pairing() -> tuple[dict[int, dict[str, np.ndarray]], dict[int, int]]:
            # on first use (after the "dlib" row has found the faces, so that its time includes detection)
            faces = {i: dlib_default(r.images[i]) for i in range(args.n)}
            found = [i for i in range(args.n) if faces[i]]
            mm = {i: {k: np.subtract(faces[i][0].points[k], r.landmarks[k][i]) * dist[i] for k in EYES} for i in found}
            return mm, dict(zip(found, np.random.default_rng(args.seed).permutation(found)))

        def offset(i: int, eye: str) -> np.ndarray:
            mm, donor = pairing()
            return mm[donor[i]][eye] / dist[i]

        return offset

    def random_offsets(sigma_px: float):
        """DIAGNOSIS: Gaussian eye-centre errors of ``sigma_px`` pixels along each axis (a fixed draw)."""
        draw = np.random.default_rng(args.seed).normal(0.0, sigma_px, (args.n, 2, 2))
        return lambda i, eye: draw[i, EYES.index(eye)]

    def at_iris(detector):
        """DIAGNOSIS: a detector's faces with each eye centre moved to the darkest part of the eye (the iris
        and pupil): the darkness-weighted centroid of the darkest tenth of the pixels in a box around its
        corners' midpoint, as wide as the eye and 0.6 times as high (below the brow) (a crop centred on the iris no longer shows where the iris looks)."""

        def detect(img: np.ndarray) -> list[FaceLandmarks]:
            gray = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            faces = []
            for f in detector(img)[:1]:
                points = dict(f.points)
                for eye in ("right_eye", "left_eye"):
                    a, b = np.array(f.points[f"{eye}_outer"]), np.array(f.points[f"{eye}_inner"])
                    mid, half = (a + b) / 2, np.linalg.norm(a - b) / 2 * np.array([1.0, 0.6])
                    x0, y0 = np.floor(mid - half).astype(int).clip(0)
                    x1, y1 = np.ceil(mid + half).astype(int) + 1
                    patch = gray[y0:y1, x0:x1]
                    dark = np.clip(np.quantile(patch, 0.1) - patch, 0, None)
                    ys, xs = np.mgrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
                    if dark.sum() > 0:
                        points[eye] = (float((dark * xs).sum() / dark.sum()), float((dark * ys).sum() / dark.sum()))
                faces.append(dataclasses.replace(f, points=points))
            return faces

        return detect

    def once(detector):
        """``detector``, finding each image's faces once: later calls with the same image reuse them."""
        found: dict[bytes, list[FaceLandmarks]] = {}

        def detect(img: np.ndarray) -> list[FaceLandmarks]:
            key = hashlib.sha1(np.ascontiguousarray(img)).digest()
            if key not in found:
                found[key] = detector(img)
            return found[key]

        return detect

    dlib_default = once(DlibDetector())
    # name -> (detector, landmarks.eye_centres)
    detectors = {
        "landmarks (stand-in)": (stand_in(("right_eye", "left_eye", "nose", "mouth")), "landmarks"),
        "dlib": (dlib_default, "landmarks"),
        "dlib, eye centres from the face model": (dlib_default, "face_model"),
        "dlib, true eye centres": (with_true_eyes(dlib_default), "landmarks"),
        "dlib, true eye centres + dlib's errors of another face": (with_true_eyes(dlib_default, dlib_offsets_of_another_face()), "landmarks"),
        **{f"dlib, true eye centres + {s:g} px random errors": (with_true_eyes(dlib_default, random_offsets(s)), "landmarks") for s in (1.0, 2.0)},
        "dlib, eye centres at the iris": (at_iris(dlib_default), "landmarks"),
        "dlib, no upsampling": (DlibDetector(upsample=0), "landmarks"),
        "dlib, no roll search": (DlibDetector(rolls_deg=()), "landmarks"),
        **({"dlib cnn, no upsampling": (DlibDetector("cnn", upsample=0), "landmarks")} if args.cnn else {}),
        "haar": (HaarDetector(), "landmarks"),
    }
    for name, (detector, eye_source) in detectors.items():
        t = time.time()
        predictor = RawGazePredictor(model, norm, detector, face_model, intrinsics=r.camera_matrix, eye_centres=eye_source)
        out = list(predictor.predict(frames))
        seconds = time.time() - t
        # the largest face of each image (the renders hold one face; a false face, if larger, counts against)
        faces = {i: o.faces[0] for i, o in enumerate(out) if o.faces}
        found = sorted(faces)
        errors = per_sample_errors(np.stack([faces[i].gaze for i in found]), r.gaze[found]) if found else np.zeros(0)
        methods: dict[str, int] = {}
        for i in found:
            methods[faces[i].face.landmarks.method] = methods.get(faces[i].face.landmarks.method, 0) + 1
        landmark_px = {
            eye: [float(np.linalg.norm(np.subtract(faces[i].face.eyes[eye], r.landmarks[eye][i]))) for i in found]
            for eye in ("right_eye", "left_eye") if found
        } | {
            truth: [float(np.linalg.norm(np.subtract(faces[i].face.landmarks.points[point], r.landmarks[truth][i]))) for i in found]
            for point, truth in (("nose_base", "nose"), ("mouth", "mouth"))
            if found and all(point in faces[i].face.landmarks.points for i in found)
        }
        results[name] = {
            "found": len(found),
            "methods": methods,
            "error_deg": errors.tolist(),
            "rotation_error_deg": [rotation_deg(faces[i].face.rotation, r.rotation[i]) for i in found],
            "head_pose_error_deg": [rotation_deg(faces[i].face.head.rotation, r.head_rotation[i]) for i in found],
            "face_centre_error_mm": [float(np.linalg.norm(faces[i].face.face_centre - r.face_centre[i])) for i in found],
            "landmark_error_px": landmark_px,
            "seconds_per_frame": seconds / args.n,  # the rows that reuse dlib's default faces: without detection
        }
        if name == "haar":
            eyes = [i for i in found if faces[i].face.landmarks.method == "haar-eyes"]
            results["haar (eyes found)"] = {"found": len(eyes), "error_deg": per_sample_errors(
                np.stack([faces[i].gaze for i in eyes]), r.gaze[eyes]).tolist() if eyes else []}

    # the true pose: the normalization alone, with the true face centre and rotation
    crops = {"face": [], "leye": [], "reye": []}
    for i in range(args.n):
        w = face_warp(r.camera_matrix, r.face_centre[i], r.rotation[i], norm)
        crops["face"].append(warp_crop(r.images[i], w, 224))
        for crop, point in (("leye", "left_eye"), ("reye", "right_eye")):
            crops[crop].append(warp_crop(r.images[i], crop_warp(w, transform_points(w, r.landmarks[point][i]), norm.eye_span_px, 112), 112))
    with torch.no_grad():
        x = [torch.from_numpy(np.stack(crops[k])).permute(0, 3, 1, 2).float().div(255) for k in ("face", "leye", "reye")]
        g_true = denormalize_gaze(model(*x).double().numpy(), r.rotation)
    results["true pose"] = {"found": args.n, "error_deg": per_sample_errors(g_true, r.gaze).tolist()}

    mean_predictor = per_sample_errors(np.tile(r.gaze.mean(0), (args.n, 1)), r.gaze)
    summary = {
        name: {
            "found": f"{v['found']}/{args.n}",
            "mean_error_deg": float(np.mean(v["error_deg"])) if v["error_deg"] else None,
            "median_error_deg": float(np.median(v["error_deg"])) if v["error_deg"] else None,
            **({"median_rotation_error_deg": float(np.median(v["rotation_error_deg"]))} if v.get("rotation_error_deg") else {}),
            **({"median_face_centre_error_mm": float(np.median(v["face_centre_error_mm"]))} if v.get("face_centre_error_mm") else {}),
            **({"median_head_pose_error_deg": float(np.median(v["head_pose_error_deg"]))} if v.get("head_pose_error_deg") else {}),
            **({"median_eye_error_px": float(np.median(v["landmark_error_px"]["right_eye"] + v["landmark_error_px"]["left_eye"]))}
               if v.get("landmark_error_px") else {}),
            **({f"median_{p}_error_px": float(np.median(e)) for p, e in v["landmark_error_px"].items() if p in ("nose", "mouth")}
               if v.get("landmark_error_px") else {}),
            **({"seconds_per_frame": v["seconds_per_frame"]} if "seconds_per_frame" in v else {}),
            **({"methods": v["methods"]} if "methods" in v else {}),
        }
        for name, v in results.items()
    }
    report = {
        "run": str(run),
        "model": cfg.model.name,
        "n_images": args.n,
        "render_seconds": render_s,
        "mean_predictor_error_deg": float(mean_predictor.mean()),
        "summary": summary,
        "per_image": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    order = ["ideal", "true pose", "landmarks (stand-in)", *(k for k in detectors if k.startswith("dlib")), "haar (eyes found)", "haar"]
    fig, ax = plt.subplots(figsize=(12, 4.6))
    means = [summary[k]["mean_error_deg"] or 0.0 for k in order]
    ax.bar(range(len(order)), means, color="tab:blue")
    ax.axhline(float(mean_predictor.mean()), color="tab:red", ls="--", lw=1, label="mean predictor")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{textwrap.fill(k, 12)}\n{summary[k]['found']}" for k in order], fontsize=7)
    ax.set_ylabel("camera-frame gaze error (deg)")
    ax.set_title(f"predict-raw on {args.n} rendered faces, {cfg.model.name}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
