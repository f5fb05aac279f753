"""validate-data: the whole data set read as training reads it, every problem reported by file and row."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from image_rating.cli import main
from image_rating.config import DataConfig
from image_rating.validate import validate_data


def test_synthetic_data_pass_with_a_summary(synthetic):
    report = validate_data(DataConfig(root=synthetic.root))
    assert report.ok and report.problems == [] and report.warnings == []
    assert report.n_rows == report.n_valid_rows == report.files == report.sections["image folder"]["image_files"] == 60
    assert report.dimensions == synthetic.dimensions
    truth = pd.read_csv(synthetic.csv)
    ratings = report.sections["ratings"]
    assert ratings["Brightness"]["mean_max"] == truth["Brightness_mean"].max()
    assert ratings["Sharpness"]["sd_min"] == truth["Sharpness_sd"].min()
    assert report.sections["image sizes"]["width_min"] == report.sections["image sizes"]["height_max"] == 48
    written = report.to_dict()
    assert written["ms_per_image"] > 0 and written["csv"] == str(synthetic.csv) and written["files"] == 60
    text = report.text()
    assert text.endswith("no problems found") and "60 image(s) read" in text and "Brightness" in text


def test_every_planted_fault_is_reported_by_file_name(synthetic, tmp_path, capsys):
    root = tmp_path / "faulty"
    shutil.copytree(synthetic.root, root)
    images = root / "images"
    (images / "img_0003.png").write_bytes(b"not a png")  # undecodable
    with open(images / "img_0004.png", "r+b") as f:  # truncated
        f.truncate(80)
    (images / "img_0005.png").unlink()  # listed, missing
    shutil.copy(images / "img_0000.png", images / "stray.png")  # not listed: a warning only
    (images / "stray_broken.jpg").write_bytes(b"\xff\xd8 broken")  # not listed and unreadable: a warning too
    df = pd.read_csv(root / synthetic.csv.name, dtype=str)
    df.loc[6, "Contrast_mean"] = "high"
    df.loc[7, "Warmth_sd"] = "-2"
    df.loc[8, "image"] = df.loc[9, "image"]
    df.loc[10, "Entropy_mean"] = ""
    df.to_csv(root / synthetic.csv.name, index=False)

    report = validate_data(DataConfig(root=root))
    text = "\n".join(report.problems)
    # every file opened: 59 rows with a file (img_0009 twice), 3 unlisted (img_0008 lost its row, 2 strays)
    assert not report.ok and report.files == 62
    for expected in [
        "row 5 (img_0003.png)",
        "img_0003.png: unreadable image",
        "row 6 (img_0004.png)",
        "img_0004.png: unreadable image",
        "row 7 (img_0005.png): image file",
        "not found",
        "row 8 (img_0006.png): non-numeric rating 'high' in Contrast_mean",
        "row 9 (img_0007.png): negative sd in Warmth_sd",
        "row 11 (img_0009.png): duplicate image name (first in row 10)",
        "row 12 (img_0010.png): missing (NaN) rating in Entropy_mean",
    ]:
        assert expected in text, expected
    warnings = "\n".join(report.warnings)
    assert "stray.png" in warnings and "img_0008.png" in warnings and "stray_broken.jpg: unreadable image" in warnings

    # the command prints all of it and exits 1; --json keeps it
    code = main(["validate-data", str(root), "--config", "demo", "--json", str(tmp_path / "v.json")])
    out = capsys.readouterr().out
    assert code == 1 and out.count("PROBLEM ") == len(report.problems) and "ms per image" in out
    assert out.count("WARNING ") == len(report.warnings) == 2
    assert out.rstrip().endswith(f"{len(report.problems)} problem(s), 2 warning(s)")
    assert json.loads((tmp_path / "v.json").read_text())["problems"] == report.problems


def test_a_csv_that_cannot_be_used_still_gets_its_images_checked(synthetic, tmp_path):
    root = tmp_path / "nocsv"
    shutil.copytree(synthetic.root, root)
    df = pd.read_csv(root / synthetic.csv.name)
    df.drop(columns=["Texture_mean"]).to_csv(root / synthetic.csv.name, index=False)
    (root / "images" / "img_0001.png").write_bytes(b"junk")
    report = validate_data(DataConfig(root=root))
    assert "dimension 'Texture': column 'Texture_sd' but no 'Texture_mean'" in report.problems[0]
    assert any("img_0001.png: unreadable image" in p for p in report.problems) and report.files == 60
