"""expand_inputs: folders, files and list files into one list of paths, with errors naming what is missing."""

from pathlib import Path

import pytest

from perception_shared.errors import DataError
from perception_shared.inputs import expand_inputs

IMAGES = (".png", ".jpg")


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_folder_file_and_list_expand_in_order(tmp_path):
    _touch(tmp_path / "imgs", "b.PNG", "a.jpg", "notes.md", "c.txt")
    (tmp_path / "imgs" / "sub.png").mkdir()  # a folder named like an image is not a file
    lst = tmp_path / "lists" / "some.lst"
    lst.parent.mkdir()
    # a relative path (relative to the list's folder, not the working directory), a comment, a blank line
    lst.write_text("# chosen images\n../imgs/a.jpg  # the first\n\n   \n" + f"{tmp_path / 'imgs' / 'b.PNG'}\n")
    single = tmp_path / "imgs" / "a.jpg"
    got = expand_inputs([tmp_path / "imgs", str(lst), single], IMAGES)
    # the folder's two images (sorted, case-insensitive suffix), the list's two, then the file: as asked
    listed = [lst.parent / "../imgs/a.jpg", tmp_path / "imgs" / "b.PNG"]
    assert got == [tmp_path / "imgs" / "a.jpg", tmp_path / "imgs" / "b.PNG", *listed, single]
    # a file named directly is taken whatever its suffix; a .txt given directly is a list
    assert expand_inputs([tmp_path / "imgs" / "notes.md"], IMAGES) == [tmp_path / "imgs" / "notes.md"]
    (tmp_path / "imgs" / "c.txt").write_text("# nothing yet\n")
    with pytest.raises(DataError, match="no images to read"):
        expand_inputs([tmp_path / "imgs" / "c.txt"], IMAGES)


def test_a_missing_listed_file_is_named_with_its_list_and_line(tmp_path):
    _touch(tmp_path, "a.png")
    lst = tmp_path / "list.txt"
    lst.write_text("a.png\n# gone\nmissing.png\n")
    with pytest.raises(DataError) as e:
        expand_inputs([lst], IMAGES)
    assert f"{lst} line 3: {tmp_path / 'missing.png'} not found" in str(e.value)


def test_a_missing_input_and_a_folder_without_matches_are_named(tmp_path):
    with pytest.raises(DataError, match=f"input {tmp_path / 'nope'} does not exist"):
        expand_inputs([tmp_path / "nope"], IMAGES)
    _touch(tmp_path / "videos", "clip.mp4")
    with pytest.raises(DataError) as e:
        expand_inputs([tmp_path / "videos"], IMAGES, what="frames")
    assert f"folder {tmp_path / 'videos'} holds no frames (.png, .jpg)" in str(e.value)
    assert expand_inputs([tmp_path / "videos"], (".MP4",)) == [tmp_path / "videos" / "clip.mp4"]
    with pytest.raises(DataError, match="none given"):
        expand_inputs([], IMAGES)


def test_list_suffixes_are_configurable(tmp_path):
    _touch(tmp_path, "a.png")
    (tmp_path / "files.csv").write_text("a.png\n")
    assert expand_inputs([tmp_path / "files.csv"], IMAGES) == [tmp_path / "files.csv"]
    assert expand_inputs([tmp_path / "files.csv"], IMAGES, list_files=(".csv",)) == [tmp_path / "a.png"]
