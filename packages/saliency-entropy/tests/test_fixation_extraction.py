"""The pure-Python port of MIT1003's checkFixations.m and the .mat reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gaze_traces import reference_traces
from scipy.io import savemat

from perception_shared.errors import DataError
from saliency_entropy.fixation_extraction import (
    MIN_FIXATION_SAMPLES,
    check_fixations,
    matlab_variable_name,
    mit1003_fixations,
    read_eye_data,
)
from saliency_entropy.synthetic import gaze_trace, write_mit_raw_mat

REFERENCE = Path(__file__).parent / "data" / "checkfixations_octave.json"


def test_matches_matlab_code_run_in_octave() -> None:
    expected = json.loads(REFERENCE.read_text())["fixations"]
    traces = reference_traces()
    assert len(traces) == len(expected) == 60
    for k, (trace, exp) in enumerate(zip(traces, expected)):
        got = np.array([[f.x, f.y, f.start, f.end] for f in check_fixations(trace)])
        want = np.array([[np.nan if v is None else v for v in row] for row in exp], dtype=float)
        assert got.shape == want.shape, f"trace {k}: {len(got)} fixations, Octave found {len(want)}"
        np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True, err_msg=f"trace {k}")


def test_recovers_the_fixations_of_a_synthetic_scanpath() -> None:
    rng = np.random.default_rng(0)
    points = np.array([[512.0, 384.0], [100.0, 80.0], [700.0, 500.0], [300.0, 650.0], [900.0, 120.0], [480.0, 400.0]])
    fixations = check_fixations(gaze_trace(points, rng))
    got = np.array([[f.x, f.y] for f in fixations])
    assert got.shape == points.shape
    np.testing.assert_allclose(got, points, atol=0.5)
    starts = [f.start for f in fixations]
    assert starts[0] == 1 and starts == sorted(starts)
    assert all(f.duration_ms >= 100 for f in fixations)


def test_a_trace_without_saccades_is_one_fixation_at_the_nan_median() -> None:
    rng = np.random.default_rng(1)
    trace = np.array([200.0, 150.0]) + rng.normal(0, 0.3, (300, 2))
    trace[10:14] = np.nan
    (fix,) = check_fixations(trace)
    assert (fix.start, fix.end) == (1, 300)
    assert fix.x == pytest.approx(np.nanmedian(trace[:, 0])) and fix.y == pytest.approx(np.nanmedian(trace[:, 1]))


def test_fixations_shorter_than_50_ms_merge_into_the_saccades() -> None:
    rng = np.random.default_rng(2)
    long_trace = gaze_trace(np.array([[100.0, 100.0], [400.0, 100.0], [700.0, 100.0]]), rng, noise_px=0.2)
    assert len(check_fixations(long_trace)) == 3
    # the middle fixation lasts 8 samples (33 ms < 50 ms): its two saccades become one
    a = np.full((60, 2), 100.0)
    t = np.linspace(0, 1, 6)[1:, None]
    b = np.array([100.0, 100.0]) + t * np.array([300.0, 0.0])
    c = np.full((MIN_FIXATION_SAMPLES - 4, 2), [400.0, 100.0])
    d = np.array([400.0, 100.0]) + t * np.array([300.0, 0.0])
    e = np.full((80, 2), [700.0, 100.0])
    short = np.concatenate([a, b, c, d, e]) + rng.normal(0, 0.2, (60 + 5 + 8 + 5 + 80, 2))
    fixations = check_fixations(short)
    assert len(fixations) == 2
    np.testing.assert_allclose([[f.x, f.y] for f in fixations], [[100, 100], [700, 100]], atol=0.5)


def test_mit1003_protocol_drops_the_first_fixation_and_those_outside_the_image() -> None:
    rng = np.random.default_rng(3)
    points = np.array([[64.0, 48.0], [20.0, 20.0], [300.0, 40.0], [100.0, 90.0], [50.0, -30.0]])
    xy, outside = mit1003_fixations(gaze_trace(points, rng), width=128, height=96)
    assert outside == 2
    np.testing.assert_allclose(xy, [[20, 20], [100, 90]], atol=0.5)
    xy_all, _ = mit1003_fixations(gaze_trace(points, rng), width=128, height=96, drop_first=False)
    assert len(xy_all) == 3


def test_reads_the_release_mat_structure(tmp_path: Path) -> None:
    eye = np.random.default_rng(4).normal(100, 1, (50, 2))
    stem = "i05june05_static_street_boston_p1010764_with_a_name_longer_than_sixty_three_characters"
    path = tmp_path / f"{stem}.mat"
    write_mit_raw_mat(path, stem, eye)
    assert len(matlab_variable_name(stem)) == 63
    np.testing.assert_allclose(read_eye_data(path), eye)


def test_bad_mat_files_name_the_file(tmp_path: Path) -> None:
    wrong = tmp_path / "img1.mat"
    savemat(wrong, {"other": np.zeros(3)})
    with pytest.raises(DataError, match=r"img1\.mat: no variable 'img1'"):
        read_eye_data(wrong)
    broken = tmp_path / "img2.mat"
    broken.write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=r"img2\.mat: cannot read MATLAB file"):
        read_eye_data(broken)
    nofield = tmp_path / "img3.mat"
    savemat(nofield, {"img3": {"OTHER": np.zeros(2)}})
    with pytest.raises(DataError, match=r"img3\.mat: variable 'img3' has no DATA\(1\)\.eyeData"):
        read_eye_data(nofield)
