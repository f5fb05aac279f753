"""The wide ratings CSV: column discovery, validation of malformed files, the split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from image_rating.config import DataConfig
from image_rating.data import (
    apply_split,
    find_dimensions,
    list_images,
    load_ratings,
    load_split,
    make_split,
    read_ratings_csv,
    save_split,
)
from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

DIMS = ["Brightness", "Effort", "Obstruction"]


def _write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(folder / n)


def _wide(names: list[str], dims: list[str] = DIMS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {"image": names}
    for d in dims:
        cols[f"{d}_mean"] = rng.uniform(0, 100, len(names)).round(3)
        cols[f"{d}_sd"] = rng.uniform(5, 20, len(names)).round(3)
    return pd.DataFrame(cols)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[DataConfig, pd.DataFrame]:
    names = [f"im{i}.png" for i in range(8)]
    _write_images(tmp_path / "images", names)
    df = _wide(names)
    df.to_csv(tmp_path / "ratings.csv", index=False)
    return DataConfig(root=tmp_path, ratings_csv="ratings.csv", num_dimensions=3), df


def test_reads_wide_csv_by_pattern(dataset):
    cfg, df = dataset
    table = load_ratings(cfg)
    assert table.dimensions == DIMS
    assert table.names == df["image"].tolist()
    np.testing.assert_allclose(table.means, df[[f"{d}_mean" for d in DIMS]].to_numpy())
    np.testing.assert_allclose(table.sds, df[[f"{d}_sd" for d in DIMS]].to_numpy())
    assert all(p.is_file() for p in table.paths)


def test_r_style_quoted_header_and_extra_columns(tmp_path: Path, dataset):
    cfg, df = dataset
    text = (cfg.root / "ratings.csv").read_text().splitlines()
    header = ",".join(f'"""{c}"""' for c in text[0].split(",")) + ',"n_raters"'
    body = [line + ",12" for line in text[1:]]
    (cfg.root / "ratings.csv").write_text("\ufeff" + "\n".join([header, *body]) + "\n")  # with a BOM
    assert list(read_ratings_csv(cfg.root / "ratings.csv").columns)[:3] == ["image", "Brightness_mean", "Brightness_sd"]
    table = load_ratings(cfg)
    assert table.dimensions == DIMS
    np.testing.assert_allclose(table.means[:, 1], df["Effort_mean"])


def test_custom_column_templates_and_explicit_dimensions(tmp_path: Path, dataset):
    cfg, df = dataset
    renamed = df.rename(columns={c: "_".join(reversed(c.split("_"))) for c in df.columns if "_" in c})
    assert "mean_Effort" in renamed.columns
    renamed.to_csv(cfg.root / "ratings.csv", index=False)
    custom = DataConfig(
        root=cfg.root, ratings_csv="ratings.csv", mean_column="mean_{dim}", sd_column="sd_{dim}", num_dimensions=3
    )
    assert load_ratings(custom).dimensions == DIMS
    assert find_dimensions(renamed.columns, "mean_{dim}") == DIMS
    subset = DataConfig(
        root=cfg.root,
        ratings_csv="ratings.csv",
        mean_column="mean_{dim}",
        sd_column="sd_{dim}",
        dimensions=["Obstruction", "Brightness"],
        num_dimensions=None,
    )
    table = load_ratings(subset)
    np.testing.assert_allclose(table.means, df[["Obstruction_mean", "Brightness_mean"]].to_numpy())


def test_missing_columns_are_all_listed(dataset):
    cfg, df = dataset
    df.drop(columns=["Effort_sd", "Obstruction_sd"]).to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError) as e:
        load_ratings(cfg)
    assert "Effort_sd" in str(e.value) and "Obstruction_sd" in str(e.value) and "ratings.csv" in str(e.value)
    df.rename(columns={"image": "file"}).to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError, match="missing column.*'?image"):
        load_ratings(cfg)
    df.rename(columns={"Effort_sd": "Effort_mean"}).to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError, match="duplicated column name.*Effort_mean"):
        load_ratings(cfg)


def test_a_dimension_with_only_its_sd_or_only_its_mean_column_is_named(dataset):
    cfg, df = dataset
    df.drop(columns=["Effort_mean"]).to_csv(cfg.root / "ratings.csv", index=False)  # Effort_sd without Effort_mean
    with pytest.raises(DataError) as e:
        load_ratings(cfg)
    assert "dimension 'Effort': column 'Effort_sd' but no 'Effort_mean'" in str(e.value)
    df.drop(columns=["Obstruction_sd"]).to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError) as e:
        load_ratings(cfg)
    assert "dimension 'Obstruction': column 'Obstruction_mean' but no 'Obstruction_sd'" in str(e.value)
    both = df.drop(columns=["Effort_mean", "Obstruction_sd"])
    both.to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError) as e:  # every such dimension in one message
        load_ratings(cfg)
    assert "'Effort'" in str(e.value) and "'Obstruction'" in str(e.value) and "ratings.csv" in str(e.value)


def test_wrong_dimension_count_and_no_matching_column(dataset):
    cfg, df = dataset
    with pytest.raises(DataError, match="found 3 dimensions.*num_dimensions is 14"):
        load_ratings(DataConfig(root=cfg.root, ratings_csv="ratings.csv"))
    with pytest.raises(DataError, match="no column matches"):
        load_ratings(DataConfig(root=cfg.root, ratings_csv="ratings.csv", mean_column="{dim}_avg", num_dimensions=None))


def test_bad_rows_are_listed_together_or_skipped(dataset):
    cfg, df = dataset
    df = df.astype(object)
    df.loc[1, "Effort_mean"] = np.nan  # NaN rating
    df.loc[2, "Brightness_mean"] = "high"  # not a number
    df.loc[4, "image"] = df.loc[3, "image"]  # duplicate name
    df.loc[5, "image"] = "missing.png"  # image not found
    (cfg.root / "images" / "im6.png").write_bytes(b"not an image at all")  # unreadable
    with open(cfg.root / "images" / "im7.png", "r+b") as f:  # truncated PNG
        f.truncate(60)
    df.loc[0, "Obstruction_sd"] = -1.0
    df.to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError) as e:
        load_ratings(cfg)
    msg = str(e.value)
    for expected in [
        "row 3 (im1.png): missing (NaN) rating in Effort_mean",
        "row 4 (im2.png): non-numeric rating 'high' in Brightness_mean",
        "row 6 (im3.png): duplicate image name (first in row 5)",
        "row 5 (im3.png): image name repeated in a later row",
        "missing.png not found",
        "unreadable image",
        "im6.png",
        "im7.png",
        "row 2 (im0.png): negative sd in Obstruction_sd",
        "8 of 8 rows have problems",
        "--skip-bad",
    ]:
        assert expected in msg, expected

    df.loc[0, "Obstruction_sd"] = 3.0
    df.to_csv(cfg.root / "ratings.csv", index=False)
    policy = BadInputPolicy(skip=True)
    table = load_ratings(cfg, policy)
    assert table.names == ["im0.png"]
    assert policy.count == 7
    assert sorted(table.skipped) == sorted(
        ["im1.png", "im2.png", "im3.png", "im3.png", "missing.png", "im6.png", "im7.png"]
    )


def test_image_names_without_extension_and_existence_check_only(dataset):
    cfg, df = dataset
    df["image"] = df["image"].str.replace(".png", "", regex=False)
    df.to_csv(cfg.root / "ratings.csv", index=False)
    table = load_ratings(cfg)
    assert [p.name for p in table.paths] == [f"im{i}.png" for i in range(8)]
    (cfg.root / "images" / "im3.png").write_bytes(b"garbage")
    exists_only = DataConfig(root=cfg.root, ratings_csv="ratings.csv", num_dimensions=3, check_images="exists")
    assert len(load_ratings(exists_only)) == 8
    with pytest.raises(DataError, match="im3.png"):
        load_ratings(cfg)


def test_unparseable_empty_and_absent_files(tmp_path: Path, dataset):
    cfg, _ = dataset
    (cfg.root / "ratings.csv").write_text("")
    with pytest.raises(DataError, match="cannot be parsed"):
        load_ratings(cfg)
    (cfg.root / "ratings.csv").write_text("image,Brightness_mean,Brightness_sd\n")
    with pytest.raises(DataError, match="has no rows"):
        load_ratings(DataConfig(root=cfg.root, ratings_csv="ratings.csv", num_dimensions=None))
    with pytest.raises(DataError, match="does not exist"):
        load_ratings(DataConfig(root=tmp_path / "nowhere"))
    shutil.rmtree(cfg.root / "images")
    _wide(["a.png"]).to_csv(cfg.root / "ratings.csv", index=False)
    with pytest.raises(DataError, match="image folder"):
        load_ratings(cfg)


def test_split_is_seeded_80_20_and_ignores_row_order():
    names = [f"img_{i:03d}.png" for i in range(101)]
    a = make_split(names, 0.2, seed=7, test_fraction=0.0)
    b = make_split(list(reversed(names)), 0.2, seed=7, test_fraction=0.0)
    c = make_split(names, 0.2, seed=8, test_fraction=0.0)
    assert a == b and a != c
    assert len(a["val"]) == 20 and len(a["train"]) == 81
    assert set(a["train"]).isdisjoint(a["val"]) and set(a["train"]) | set(a["val"]) == set(names)


def test_split_round_trip_and_apply(tmp_path: Path, dataset):
    cfg, _ = dataset
    table = load_ratings(cfg)
    split = make_split(table.names, 0.25, seed=3)
    path = save_split(split, tmp_path / "split.json")
    loaded = load_split(path)
    assert loaded["train"] == split["train"] and loaded["val"] == split["val"] and loaded["n_val"] == 2
    train, val = apply_split(table, loaded)
    assert train.names == split["train"] and val.names == split["val"]
    i = table.names.index(val.names[0])
    np.testing.assert_array_equal(val.means[0], table.means[i])

    with pytest.raises(DataError, match="not in"):
        apply_split(table, {"train": split["train"] + ["ghost.png"], "val": split["val"]})
    path.write_text('{"format": "image-rating-split/1", "train": ["a"], "val": ["a"]}')
    with pytest.raises(DataError, match="both train and val"):
        load_split(path)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not an image-rating split"):
        load_split(path)


def test_list_images_from_folder_file_and_list(tmp_path: Path):
    _write_images(tmp_path / "imgs", ["b.png", "a.png"])
    (tmp_path / "imgs" / "notes.md").write_text("x")
    lst = tmp_path / "list.txt"
    lst.write_text("# images\nimgs/a.png\n\nimgs/b.png  # second\n")
    assert [p.name for p in list_images([tmp_path / "imgs"])] == ["a.png", "b.png"]
    assert list_images([lst]) == [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png"]
    assert list_images([tmp_path / "imgs" / "b.png"]) == [tmp_path / "imgs" / "b.png"]
    lst.write_text("imgs/c.png\n")
    with pytest.raises(DataError, match="line 1"):
        list_images([lst])
    with pytest.raises(DataError, match="neither"):
        list_images([tmp_path / "nope"])
