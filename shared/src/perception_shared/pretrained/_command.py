"""The ``<package> weights list|fetch CONFIG|check [FILE...]`` command every package has.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError, WeightsError
from ._cache import in_caches, is_offline, locate, locate_weights
from ._hashes import (
    PUBLISHED_SHA256,
    check_against_manifest,
    expected_hash,
    load_weights_manifest,
    sha256_file,
    verdict,
)
from ._identifiers import canonical_identifier, published_weights
from ._sources import WeightsRequest, WeightsSource, random_init


def add_weights_subcommands(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``list``, ``fetch CONFIG`` and ``check [FILE...]`` under a package's ``weights`` parser."""
    sub = parser.add_subparsers(dest="weights_action", required=True, metavar="{list,fetch,check}")
    sub.add_parser(
        "list", help="for each shipped config: the weights, where they would come from now, and their sha256"
    )
    fetch = sub.add_parser(
        "fetch", help="download a config's weights into the standard caches (on a machine with internet)"
    )
    fetch.add_argument("config", metavar="CONFIG", help="name of a shipped config")
    check = sub.add_parser(
        "check", help="verify weights files against the recorded sha256; exits 1 naming a file that differs"
    )
    check.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="files to check (IDENTIFIER=FILE to say which weights a file holds); default: every weights "
        "file the configs would use now",
    )
    return parser


def _where_now(request: WeightsRequest) -> tuple[str, WeightsSource | None]:
    """('random' | kind | 'download' | 'MISSING' | 'ERROR', source) without downloading anything."""
    if not request.pretrained:
        return "random", random_init(request.identifier)
    spec = published_weights(request.identifier)
    if request.file is not None:
        source = locate(spec, request.file, False, None, None)
        return source.kind, source
    cached = in_caches(spec)
    if cached is not None:
        return cached.kind, cached
    return ("MISSING" if is_offline() else "download"), None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _identify(file: Path, requested: Sequence[str], manifest: Mapping[str, Mapping[str, str]]) -> str | None:
    """Which identifier a file given to ``weights check`` holds: from its hub-cache folder, else from a
    recorded file name that only one identifier has, else from a recorded sha256 equal to its own."""
    for part in file.absolute().parts:
        if part.startswith("models--timm--"):
            return part[len("models--timm--") :]
    candidates = {**PUBLISHED_SHA256, **manifest}
    entries = {i: expected_hash(i, manifest) for i in {*candidates, *requested}}
    named = [i for i, e in entries.items() if e and e.get("file") == file.name]
    if len(named) == 1:
        return named[0]
    digest = sha256_file(file)
    same = [i for i, e in entries.items() if e and e.get("sha256") == digest]
    return same[0] if same else None


def _check_files(files: Sequence[str], requested: Sequence[str], manifest: Mapping[str, Mapping[str, str]]) -> int:
    code = 0
    for arg in files:
        identifier, path = None, Path(arg)
        if "=" in arg and not path.exists():
            identifier, _, rest = arg.partition("=")
            identifier, path = canonical_identifier(identifier), Path(rest)
        if not path.is_file():
            raise WeightsError(f"weights check: {path} is not a file")
        identifier = identifier or _identify(path, requested, manifest)
        if identifier is None:
            print(f"UNKNOWN {path}: cannot tell which weights it holds; give it as IDENTIFIER={path}")
            code = 1
            continue
        status, message = verdict(identifier, path, sha256_file(path), manifest)
        print(f"{'FAIL' if status == 'differs' else status.upper()} {message}")
        code = 1 if status == "differs" else code
    return code


def _check_configs(requests: Mapping[str, list[WeightsRequest]], manifest: Mapping[str, Mapping[str, str]]) -> int:
    code, seen = 0, set()
    for request in (r for rs in requests.values() for r in rs if r.pretrained):
        if (request.identifier, request.file) in seen:
            continue
        seen.add((request.identifier, request.file))
        try:
            where, source = _where_now(request)
        except WeightsError as e:  # a damaged cache file or a missing user file
            print(f"FAIL {request.identifier}: {e}")
            code = 1
            continue
        if source is None:
            print(f"ABSENT {request.identifier}: not present here ({where}); nothing to check")
            continue
        assert source.path is not None and source.sha256 is not None
        status, message = verdict(source.identifier, source.path, source.sha256, manifest)
        print(f"{'FAIL' if status == 'differs' else status.upper()} {message}")
        code = 1 if status == "differs" else code
    return code


def weights_command(
    args: argparse.Namespace,
    *,
    package: str,
    requests: Mapping[str, list[WeightsRequest]],
    manifest_path: Path,
) -> int:
    """Run ``<package> weights list|fetch CONFIG|check [FILE...]`` (arguments from ``add_weights_subcommands``).

    ``requests`` maps each shipped config's name to the weights it asks for; ``manifest_path`` is the
    package's JSON manifest of known hashes (``load_weights_manifest``). Returns the exit code: 1 when
    ``check`` or ``fetch`` finds a file whose sha256 differs from the recorded one.
    """
    manifest = load_weights_manifest(manifest_path)
    action = args.weights_action
    if action == "list":
        rows = [["CONFIG", "ROLE", "IDENTIFIER", "FROM", "SHA256", "PATH"]]
        for config, reqs in requests.items():
            for request in reqs:
                try:
                    where, source = _where_now(request)
                except WeightsError as e:
                    where, source = f"ERROR: {e}".splitlines()[0], None
                digest = source.sha256 if source and source.sha256 else ""
                path = str(source.path) if source and source.path else ""
                rows.append([config, request.role, request.identifier, where, digest, path])
        print(_table(rows))
        return 0
    if action == "fetch":
        if args.config not in requests:
            raise ConfigError(f"weights fetch: unknown config {args.config!r}; shipped configs: {', '.join(requests)}")
        code = 0
        for request in requests[args.config]:
            if not request.pretrained:
                print(f"{request.role}: {random_init(request.identifier).describe()}; nothing to fetch")
                continue
            source = locate_weights(request.identifier, request.file, allow_download=True, package=package)
            print(f"{request.role}: {source.describe()}")
            warning = check_against_manifest(source, manifest)
            if warning:
                print(f"FAIL {warning}")
                code = 1
        return code
    if action == "check":
        requested = [r.identifier for rs in requests.values() for r in rs if r.pretrained]
        if args.files:
            return _check_files(args.files, requested, manifest)
        return _check_configs(requests, manifest)
    raise ConfigError(f"unknown weights action {action!r}; expected list, fetch or check")
