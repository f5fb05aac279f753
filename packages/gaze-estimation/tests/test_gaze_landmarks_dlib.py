"""predict-raw with dlib on a real photograph (scikit-image's astronaut) and on rendered faces; several faces,
head angles, landmark smoothing, and video frames that cannot be decoded."""

import csv
import importlib.util
import json
import math

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from gaze_estimation import face_detection
from gaze_estimation.cli import main
from gaze_estimation.face_detection import SHAPE_68, DlibDetector, dlib_model_file, shape_to_landmarks
from gaze_estimation.geometry import pitchyaw_to_vector
from gaze_estimation.landmarks import (
    FaceLandmarks,
    HeadPose,
    LandmarkConfig,
    build_detector,
    estimate_head_pose,
    eye_centres,
    load_face_model,
    resolve_detector,
)
from gaze_estimation.raw import Frame, RawGazePredictor, default_camera_matrix, video_frames
from gaze_estimation.smoothing import LandmarkSmoother
from gaze_estimation.synthetic import random_camera_faces
from perception_shared.errors import ConfigError
from perception_shared.extras import MissingExtraError

# Eye centres of scikit-image's astronaut (512 x 512), marked by hand on 16x zoomed crops: the centre of each
# pupil, in OpenCV's pixel-centre coordinates (x, y). The subject's right eye is on the image's left.
ASTRONAUT_RIGHT_EYE = (203.3, 100.6)
ASTRONAUT_LEFT_EYE = (246.4, 102.8)


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skdata.astronaut())


@pytest.fixture(scope="module")
def dlib_detector():
    return DlibDetector()


def turned(image: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise (as shown) by ``angle_deg`` about its centre, and the 2 x 3 map."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle_deg, 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


def facing_error_deg(head: HeadPose) -> float:
    """Angle between the face's forward direction (-z of the head) and the direction from the face to the camera."""
    to_camera = -head.eye_midpoint / np.linalg.norm(head.eye_midpoint)
    return math.degrees(math.acos(float(np.clip(-head.rotation[:, 2] @ to_camera, -1, 1))))


def test_dlib_finds_the_astronaut_with_eyes_on_the_eyes_and_a_frontal_head(astronaut, dlib_detector):
    faces = dlib_detector(astronaut)
    assert faces and faces[0].method == "dlib-hog" and faces[0].score > 0.5
    face = faces[0]
    assert [f.box[2] * f.box[3] for f in faces] == sorted((f.box[2] * f.box[3] for f in faces), reverse=True)
    np.testing.assert_allclose(face.points["right_eye"], ASTRONAUT_RIGHT_EYE, atol=2.5)
    np.testing.assert_allclose(face.points["left_eye"], ASTRONAUT_LEFT_EYE, atol=2.5)
    x, y, w, h = face.box
    for eye in (ASTRONAUT_RIGHT_EYE, ASTRONAUT_LEFT_EYE):
        assert x < eye[0] < x + w and y < eye[1] < y + h
    # She faces the camera: the rigid points (eye corners, nose) with the canonical model put her face within
    # 12 degrees of the line to the camera (measured 8.6; focal length unknown, the default is the image width)
    # and upright. The mouth corners would not: with the generic 6-point model (eye and mouth corners) her
    # smile reads as a face turned 33 degrees away from the camera (pitch -50 in the camera's axes).
    k = default_camera_matrix(512, 512)
    head = estimate_head_pose(k, face, load_face_model("canonical"))
    assert head.method == "pnp"
    assert facing_error_deg(head) < 12.0
    assert abs(head.angles_deg()[2]) < 6.0
    assert facing_error_deg(estimate_head_pose(k, face, load_face_model("generic"))) > 25.0
    # landmarks.eye_centres: face_model: the canonical model's eye centres (midway between its eye corners), placed
    # by the pose from the eye corners and nose alone, land on the pupils too (measured 1.7 and 2.5 px off)
    rigid, eyes = eye_centres(k, face, load_face_model("canonical"), "face_model")
    assert rigid.method == "pnp" and facing_error_deg(rigid) < 12.0
    np.testing.assert_allclose(eyes["right_eye"], ASTRONAUT_RIGHT_EYE, atol=3.0)
    np.testing.assert_allclose(eyes["left_eye"], ASTRONAUT_LEFT_EYE, atol=3.0)


def test_dlib_cnn_detector_finds_the_astronaut(astronaut):
    faces = DlibDetector("cnn", upsample=0)(np.ascontiguousarray(astronaut[:256, 96:352]))  # a crop: the CNN is slow on CPU
    assert len(faces) == 1 and faces[0].method == "dlib-cnn" and faces[0].score > 0.5
    np.testing.assert_allclose(faces[0].points["right_eye"], np.subtract(ASTRONAUT_RIGHT_EYE, (96, 0)), atol=2.5)
    np.testing.assert_allclose(faces[0].points["left_eye"], np.subtract(ASTRONAUT_LEFT_EYE, (96, 0)), atol=2.5)
    with pytest.raises(ConfigError, match="use hog or cnn"):
        DlibDetector("mtcnn")


@pytest.mark.parametrize("angle", [20.0, -20.0])
def test_a_rolled_photograph_gives_the_roll_back(astronaut, dlib_detector, angle):
    """Turning the image about the principal point turns the camera about its axis: the head's roll changes by
    the angle (counter-clockwise as shown is a negative roll), its facing does not, the eyes move with the image."""
    k = default_camera_matrix(512, 512)
    model = load_face_model("canonical")
    upright = estimate_head_pose(k, dlib_detector(astronaut)[0], model)
    image, m = turned(astronaut, angle)
    face = dlib_detector(image)[0]
    head = estimate_head_pose(k, face, model)
    assert head.angles_deg()[2] == pytest.approx(upright.angles_deg()[2] - angle, abs=3.0)
    assert abs(facing_error_deg(head) - facing_error_deg(upright)) < 4.0
    rigid, eyes = eye_centres(k, face, model, "face_model")
    assert rigid.angles_deg()[2] == pytest.approx(upright.angles_deg()[2] - angle, abs=3.0)
    for name, marked in (("right_eye", ASTRONAUT_RIGHT_EYE), ("left_eye", ASTRONAUT_LEFT_EYE)):
        np.testing.assert_allclose(face.points[name], m[:, :2] @ marked + m[:, 2], atol=3.0)
        np.testing.assert_allclose(eyes[name], m[:, :2] @ marked + m[:, 2], atol=3.0)


def test_dlib_on_rendered_faces_finds_them_and_their_eyes(dlib_detector):
    r = random_camera_faces(np.random.default_rng(3), 8, image_size=(480, 360), focal_px=450.0)
    detector = dlib_detector
    model = load_face_model("synthetic")
    found, eye_px, rot_deg = 0, [], []
    for i in range(8):
        faces = detector(r.images[i])
        if not faces:
            continue
        found += 1
        for eye in ("right_eye", "left_eye"):
            eye_px.append(np.linalg.norm(np.subtract(faces[0].points[eye], r.landmarks[eye][i])))
        head = estimate_head_pose(r.camera_matrix, faces[0], model)
        rot_deg.append(math.degrees(math.acos(np.clip((np.trace(head.rotation @ r.head_rotation[i].T) - 1) / 2, -1, 1))))
    assert found >= 7  # measured: 7 of 8 here (deterministic); 55 of 60 in benchmarks/raw_detectors.py
    assert np.median(eye_px) < 3.0, eye_px
    assert np.median(rot_deg) < 10.0, rot_deg


def test_shape_points_become_named_landmarks():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (68, 2))
    face = shape_to_landmarks(pts, (1.0, 2.0, 3.0, 4.0), 0.7, "dlib-hog")
    np.testing.assert_allclose(face.points["right_eye"], pts[36:42].mean(0))
    np.testing.assert_allclose(face.points["left_eye"], pts[42:48].mean(0))
    assert face.points["right_eye_outer"] == tuple(pts[36]) and face.points["left_eye_outer"] == tuple(pts[45])
    assert face.points["nose"] == tuple(pts[30]) and face.points["nose_right"] == tuple(pts[31]) and face.points["mouth_left"] == tuple(pts[54])
    assert face.points["right_brow_outer"] == tuple(pts[17]) and face.points["left_brow"] == tuple(pts[24])
    assert face.score == 0.7 and face.box == (1.0, 2.0, 3.0, 4.0)
    five = shape_to_landmarks(pts[:5], (0, 0, 1, 1), None, "dlib-hog")
    assert set(five.points) == {"right_eye", "left_eye"}  # eye corners only: the pose comes from the two eyes
    np.testing.assert_allclose(five.points["left_eye"], pts[:2].mean(0))
    np.testing.assert_allclose(five.points["right_eye"], pts[2:4].mean(0))
    with pytest.raises(ConfigError, match="68- or 5-point"):
        shape_to_landmarks(pts[:10], (0, 0, 1, 1), None, "dlib-hog")


def test_head_angles_follow_the_gaze_convention():
    rng = np.random.default_rng(1)
    for _ in range(20):
        rot = cv2.Rodrigues(rng.uniform(-0.6, 0.6, 3))[0]
        pitch, yaw, roll = HeadPose(rot, np.zeros(3), "pnp").angles_deg()
        # the head's z axis (into the head) is pitchyaw_to_vector of its pitch and yaw, as a gaze would be
        hz = pitchyaw_to_vector(torch.tensor([[math.radians(pitch), math.radians(yaw)]], dtype=torch.float64))[0].numpy()
        np.testing.assert_allclose(rot[:, 2], hz, atol=1e-9)
        # undoing pitch and yaw leaves a turn about z by the roll
        back = cv2.Rodrigues(np.array([0.0, math.radians(yaw), 0.0]))[0] @ cv2.Rodrigues(np.array([-math.radians(pitch), 0.0, 0.0]))[0]
        np.testing.assert_allclose(back.T @ rot, cv2.Rodrigues(np.array([0.0, 0.0, math.radians(roll)]))[0], atol=1e-9)
    assert HeadPose(np.eye(3), np.zeros(3), "pnp").angles_deg() == (0.0, 0.0, 0.0)
    # a face turned clockwise in the image: its x axis (to the subject's left, the image's right) points down
    assert HeadPose(cv2.Rodrigues(np.array([0.0, 0.0, 0.3]))[0], np.zeros(3), "pnp").angles_deg()[2] == pytest.approx(math.degrees(0.3))


def test_dlib_default_missing_extra_and_missing_model_file(monkeypatch, tmp_path, caplog):
    assert resolve_detector(None) == "dlib" and resolve_detector("haar") == "haar"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r'pip install "packages/gaze-estimation\[landmarks\]"'):
        build_detector(LandmarkConfig(detector="dlib"))
    with caplog.at_level("WARNING"):
        assert resolve_detector(None) == "haar"
    assert "[landmarks]" in caplog.text
    monkeypatch.setattr(importlib.util, "find_spec", real)
    # face-recognition-models installed without its model files
    spec = importlib.util.spec_from_loader(face_detection.MODELS_PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == face_detection.MODELS_PACKAGE else real(name, *a))
    with pytest.raises(ConfigError, match=f"{SHAPE_68} is not in face_recognition_models"):
        dlib_model_file(SHAPE_68)
    monkeypatch.setattr(importlib.util, "find_spec", real)
    with pytest.raises(ConfigError, match="does not exist"):
        DlibDetector(predictor_path=tmp_path / "missing.dat")
    (tmp_path / "bad.dat").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a dlib shape predictor"):
        DlibDetector(predictor_path=tmp_path / "bad.dat")


def face(x: float, y: float, w: float = 40.0) -> FaceLandmarks:
    return FaceLandmarks((x, y, w, w), {"right_eye": (x + 10, y + 15), "left_eye": (x + 30, y + 15)}, "stub")


def test_smoothing_blends_each_face_with_its_own_previous_position():
    s = LandmarkSmoother(alpha=0.25)
    a0, b0 = s("v.mp4", [face(0, 0), face(200, 0)])
    a1, b1 = s("v.mp4", [face(204, 0), face(8, 4)])  # order changed: matched by position, not by index
    assert a1.box[0] == pytest.approx(0.25 * 204 + 0.75 * 200) and a1.points["left_eye"][1] == pytest.approx(15.0)
    assert b1.box[:2] == pytest.approx((0.25 * 8, 0.25 * 4))
    assert s("other.mp4", [face(50, 0)])[0].box[0] == 50  # a new video starts afresh
    assert s("other.mp4", [face(150, 0)])[0].box[0] == 150  # too far from the last face: a new face


def test_smoothing_only_when_asked_and_only_in_videos():
    jitter = iter([face(0, 0), face(6, 0), face(0, 0), face(6, 0)])
    predictor = RawGazePredictor(torch.nn.Identity(), None, lambda img: [next(jitter)], {}, smoother=LandmarkSmoother(0.5))
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    xs = [predictor.detect(Frame("v.mp4", i, i / 10, img, video=True))[0].box[0] for i in range(2)]
    assert xs == [0, 3]
    xs = [predictor.detect(Frame(f"{i}.png", 0, None, img))[0].box[0] for i in range(2)]
    assert xs == [0, 6]  # images: never smoothed
    plain = RawGazePredictor(torch.nn.Identity(), None, lambda img: [face(6, 0)], {})
    assert plain.detect(Frame("v.mp4", 1, 0.1, img, video=True))[0].box[0] == 6


def write_video_with_bad_frame(path, images, bad: int) -> None:
    """An MJPEG video (every frame coded alone) whose frame ``bad`` is replaced by bytes that do not decode."""
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuvj420p"
        for i, im in enumerate(images):
            for packet in stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                if i == bad:
                    junk = av.Packet(b"\x00" * 64)
                    junk.pts, junk.dts, junk.time_base, junk.stream = packet.pts, packet.dts, packet.time_base, packet.stream
                    packet = junk
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)


def test_predict_raw_reports_every_face_and_goes_on_past_bad_frames(tiny_run, tmp_path, astronaut):
    # a photo with two faces: the astronaut, and her face again at 80% beside her
    photo = np.ascontiguousarray(astronaut[:, :, :].copy())
    small = cv2.resize(astronaut[40:220, 130:310], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    photo[300:300 + small.shape[0], 320:320 + small.shape[1]] = small
    Image.fromarray(photo).save(tmp_path / "two.png")
    # a video: the photo, a frame that does not decode, a black frame, the photo again
    head = np.ascontiguousarray(astronaut[:256, 96:352])
    write_video_with_bad_frame(tmp_path / "clip.avi", [head, head, np.zeros_like(head), head], bad=1)
    assert [f.problem is None for f in video_frames(tmp_path / "clip.avi")] == [True, False, True, True]
    out = tmp_path / "out"
    args = ["predict-raw", "--run", str(tiny_run), str(tmp_path / "two.png"), str(tmp_path / "clip.avi"), "--out", str(out),
            "--detector", "dlib", "--annotate", "--device", "cpu", "--set", "landmarks.dlib_threshold=0.3"]
    assert main(args) == 0
    with open(out / "gaze.csv") as f:
        rows = list(csv.DictReader(f))
    photo_rows = [r for r in rows if r["source"].endswith("two.png")]
    assert [r["face_index"] for r in photo_rows] == ["0", "1"]
    areas = [float(r["box_w"]) * float(r["box_h"]) for r in photo_rows]
    assert areas[0] > areas[1]
    big = photo_rows[0]
    assert abs(float(big["reye_x"]) - ASTRONAUT_RIGHT_EYE[0]) < 2.5 and abs(float(big["leye_y"]) - ASTRONAUT_LEFT_EYE[1]) < 2.5
    assert abs(float(big["head_roll_deg"])) < 6 and float(big["detector_score"]) > 0.5 and big["landmarks"] == "dlib-hog"
    # the small copy's eyes are the big one's, scaled and moved
    assert abs(float(photo_rows[1]["reye_x"]) - (320 + 0.8 * (ASTRONAUT_RIGHT_EYE[0] - 130 + 0.5) - 0.5)) < 3
    video = [r for r in rows if r["source"].endswith("clip.avi")]
    assert [(r["frame"], r["face_found"]) for r in video] == [("0", "1"), ("1", "0"), ("2", "0"), ("3", "1")]
    assert video[1]["pitch"] == "" and video[1]["face_index"] == ""
    summary = json.loads((out / "gaze_summary.json").read_text())
    assert summary["detector"] == "dlib" and summary["faces_found"] == 4 and summary["frames"] == 5
    missing = {row["frame"]: row["reason"] for row in summary["frames_without_face"]["frames"]}
    assert missing[1].startswith("cannot decode frame") and missing[2] == "blank frame (one flat colour)"
    with av.open(str(out / "annotated" / "clip.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert main(["predict-raw", "--run", str(tiny_run), str(tmp_path / "broken.mp4"), "--out", str(out)]) == 2
