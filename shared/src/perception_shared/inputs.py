"""Input expansion for ``predict``-style commands: folders, files and list files into one list of paths.

Every package's ``predict`` takes inputs the same way: a folder stands for its files with one of the
package's suffixes (sorted, not recursive), a file named directly is taken as it is (its decoder reports
a file it cannot read), and a list file (``.txt``/``.lst``) holds one path per line, blank lines and
``#`` comments ignored, relative paths taken relative to the list's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import DataError

LIST_SUFFIXES = (".txt", ".lst")


def expand_inputs(
    inputs: Sequence[str | Path],
    suffixes: Sequence[str],
    *,
    what: str = "images",
    list_files: Sequence[str] = LIST_SUFFIXES,
) -> list[Path]:
    """The files that ``inputs`` name (module docstring), in order; a file named twice comes twice.

    ``suffixes`` are the lower-case suffixes (with the dot) a folder's files must have; ``what`` names
    them in errors ("images", "images or videos"). A missing input, a missing path in a list file (named
    with the list's line), a folder without matching files, or nothing at all to read is a DataError.
    """
    wanted = tuple(s.lower() for s in suffixes)
    lists = tuple(s.lower() for s in list_files)
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
            if not found:
                raise DataError(f"folder {path} holds no {what} ({', '.join(wanted)})")
            out += found
        elif path.is_file() and path.suffix.lower() in lists:
            out += _read_list(path, what)
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(
                f"input {path} does not exist: it is neither a file of {what}, a folder nor a "
                f"{'/'.join(lists)} list of {what}"
            )
    if not out:
        raise DataError(f"no {what} to read in {', '.join(map(str, inputs)) or 'the inputs (none given)'}")
    return out


def _read_list(path: Path, what: str) -> list[Path]:
    """The paths a list file names, each checked to exist; relative ones are relative to the list's folder."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"list file {path} cannot be read ({e})") from None
    out = []
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        p = Path(entry)
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise DataError(f"{path} line {number}: {p} not found (a list of {what}, one path per line)")
        out.append(p)
    return out
