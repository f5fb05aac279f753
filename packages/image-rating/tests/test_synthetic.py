"""Synthetic data: real on-disk format, ratings as known functions of the pixels, known noise."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from image_rating.config import DataConfig
from image_rating.data import load_ratings
from image_rating.synthetic import CSV_NAME, DIMENSIONS, SPREAD, achievable_r, image_features, make_synthetic


def test_format_loads_with_14_dimensions(synthetic):
    assert synthetic.csv.name == CSV_NAME == "per_image_Slider_mean_sd_from_wide.csv"
    table = load_ratings(DataConfig(root=synthetic.root))
    assert table.dimensions == list(DIMENSIONS) and len(table.dimensions) == 14
    assert len(table) == 60 and (table.sds > 0).all()
    header = synthetic.csv.read_text().splitlines()[0].split(",")
    assert header[:3] == ["image", "Brightness_mean", "Brightness_sd"]


def test_scores_are_the_stated_functions_of_the_saved_pixels(synthetic):
    truth = pd.read_csv(synthetic.truth_csv)
    for i in (0, 17, 59):
        img = np.asarray(Image.open(synthetic.images_dir / truth["image"][i]))
        feats = image_features(img)
        for d in DIMENSIONS:
            np.testing.assert_allclose(truth[f"{d}_feature"][i], feats[d], rtol=1e-6, atol=1e-9)
    for d in DIMENSIONS:
        f = truth[f"{d}_feature"].to_numpy()
        np.testing.assert_allclose(truth[f"{d}_true"], 50 + SPREAD * (f - f.mean()) / f.std(), rtol=1e-6)


def test_feature_definitions_on_handmade_images():
    def features(fill) -> dict[str, float]:
        img = np.zeros((16, 16, 3), np.uint8)
        fill(img)
        return image_features(img)

    black = features(lambda im: None)
    white = features(lambda im: im.fill(255))
    assert black["Brightness"] == 0.0 and white["Brightness"] == pytest.approx(1.0)
    assert (
        white["Highlights"] == 1.0
        and white["EdgeDensity"] == 0.0
        and white["Contrast"] == pytest.approx(0.0, abs=1e-12)
    )
    red = features(lambda im: im[..., 0].fill(255))
    assert red["Saturation"] == 1.0 and red["Warmth"] == 1.0 and red["Greenness"] == -0.5
    assert red["Brightness"] == pytest.approx(0.299)
    top = features(lambda im: im[:8].fill(255))
    assert top["VerticalBalance"] == pytest.approx(1.0) and top["Symmetry"] == pytest.approx(1.0)
    left = features(lambda im: im[:, :8].fill(255))
    assert left["Symmetry"] == pytest.approx(-1.0) and left["Entropy"] == pytest.approx(1.0)
    assert left["Contrast"] == pytest.approx(0.5) and left["EdgeDensity"] == pytest.approx(2 / 16)


def test_rater_noise_and_achievable_r_are_as_stated(tmp_path):
    syn = make_synthetic(tmp_path, n_images=150, size=24, n_raters=5, noise_scale=2.0, seed=4)
    info = json.loads(syn.truth_json.read_text())
    truth = pd.read_csv(syn.truth_csv)
    csv = pd.read_csv(syn.csv)
    for d in DIMENSIONS:
        rater_sd = 2.0 * DIMENSIONS[d][1]
        assert info["dimensions"][d]["rater_sd"] == rater_sd
        assert info["dimensions"][d]["achievable_r"] == achievable_r(SPREAD, rater_sd, 5)
        noise = csv[f"{d}_mean"] - truth[f"{d}_true"]  # the mean of 5 raters' noise
        assert abs(noise.std() / (rater_sd / np.sqrt(5)) - 1) < 0.2
        assert abs((csv[f"{d}_sd"] ** 2).mean() / rater_sd**2 - 1) < 0.2  # the sample variance is unbiased
        sample_r = np.corrcoef(truth[f"{d}_true"], csv[f"{d}_mean"])[0, 1]
        np.testing.assert_allclose(info["dimensions"][d]["sample_r"], sample_r, atol=1e-4)
        fisher_gap = np.arctanh(sample_r) - np.arctanh(info["dimensions"][d]["achievable_r"])
        assert abs(fisher_gap) < 3.5 / np.sqrt(150 - 3)  # within 3.5 standard errors


def test_seeded_and_deterministic(tmp_path):
    a = make_synthetic(tmp_path / "a", n_images=6, size=20, seed=9)
    b = make_synthetic(tmp_path / "b", n_images=6, size=20, seed=9)
    c = make_synthetic(tmp_path / "c", n_images=6, size=20, seed=10)
    assert a.csv.read_bytes() == b.csv.read_bytes() != c.csv.read_bytes()
    assert (a.images_dir / "img_0003.png").read_bytes() == (b.images_dir / "img_0003.png").read_bytes()
