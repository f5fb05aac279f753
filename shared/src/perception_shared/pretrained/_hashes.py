"""sha256 of weights files and what they should be: the hashes published for the research configs'
weights (``PUBLISHED_SHA256``), a package's JSON manifest of known hashes, the sha256 prefix torchvision puts
in its file names, and the verdict on a file (``check_against_manifest``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from torch.hub import HASH_REGEX

from ..errors import ConfigError
from ._identifiers import TIMM_PREFIX, TORCHVISION_PREFIX, import_library
from ._sources import WeightsSource

SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# sha256 of files as published on the Hugging Face hub (the "Git LFS Details" of each file's page),
# for identifiers the packages' research configs use. Torchvision's published prefixes come from the
# weights' URLs (see ``expected_hash``). A package's own manifest overrides these entries.
PUBLISHED_SHA256: dict[str, dict[str, str]] = {
    "resnet50.a1_in1k": {
        "file": "model.safetensors",
        "sha256": "773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb",
        "source": "https://huggingface.co/timm/resnet50.a1_in1k/blob/5d9e13b8fdab4d9718bcf2c8f5c3af01878367e8/model.safetensors",
    },
    "resnet50.tv_in1k": {
        "file": "model.safetensors",
        "sha256": "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888",
        "source": "https://huggingface.co/timm/resnet50.tv_in1k/blob/main/model.safetensors",
    },
    "resnet101.a1h_in1k": {
        "file": "model.safetensors",
        "sha256": "1a076c0384295e7d3704f201c5711ff245507db934230bab72ff3014a95f90fe",
        "source": "https://huggingface.co/timm/resnet101.a1h_in1k/blob/21721ac354aff8c4fbc371f3c4e46fa8832d4d68/model.safetensors",
    },
    "resnet101.a1_in1k": {
        "file": "model.safetensors",
        "sha256": "1ba5b660e7c175b3c27c557fc7dc8b2815be830c516815b0155f61b403f27380",
        "source": "https://huggingface.co/timm/resnet101.a1_in1k/blob/main/model.safetensors",
    },
    "efficientnet_b3.ra2_in1k": {
        "file": "model.safetensors",
        "sha256": "279d2a53898aa89dab43fd6bd7df9f706aea4cb9cf916223988bbcb8e5850469",
        "source": "https://huggingface.co/timm/efficientnet_b3.ra2_in1k/blob/main/model.safetensors",
    },
    "efficientnet_b0.ra_in1k": {
        "file": "pytorch_model.bin",
        "sha256": "52487d0cd13681cf2ae61fdae3c913f45c1d4967e69432a2065da4695ae343fd",
        "source": "https://huggingface.co/timm/efficientnet_b0.ra_in1k/blob/main/pytorch_model.bin",
    },
    "densenet121.tv_in1k": {
        "file": "model.safetensors",
        "sha256": "c894c6d9caa317a8ca1942986dee7a16a86c77734a4d691d2abe05389cfef358",
        "source": "https://huggingface.co/timm/densenet121.tv_in1k/blob/main/model.safetensors",
    },
}

_SHA_MEMO: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (remembered per path, size, mtime and ctime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def url_file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def hash_prefix_of(file_name: str) -> str | None:
    match = HASH_REGEX.search(file_name)
    return match.group(1) if match and match.group(1) else None


def load_weights_manifest(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a JSON manifest ``{identifier: {"file", "sha256" or "sha256_prefix", "source"}}``.

    Keys starting with ``_`` are notes and skipped. A hash must be lowercase hex (a full 64-digit
    ``sha256``, or the ``sha256_prefix`` that is all some publishers give, e.g. torchvision's 8 digits).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"weights manifest {p} does not exist") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"weights manifest {p} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"weights manifest {p} must be a JSON object mapping identifiers to entries")
    out: dict[str, dict[str, str]] = {}
    for key, entry in data.items():
        if key.startswith("_"):
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"weights manifest {p}: entry {key!r} must be an object with file and sha256")
        digest, prefix = entry.get("sha256"), entry.get("sha256_prefix")
        if digest is not None and not (isinstance(digest, str) and SHA256_HEX.fullmatch(digest)):
            raise ConfigError(f"weights manifest {p}: {key}.sha256 must be 64 lowercase hex digits, got {digest!r}")
        if prefix is not None and not (isinstance(prefix, str) and re.fullmatch(r"[0-9a-f]{4,64}", prefix)):
            raise ConfigError(f"weights manifest {p}: {key}.sha256_prefix must be lowercase hex, got {prefix!r}")
        if digest is None and prefix is None:
            raise ConfigError(f"weights manifest {p}: entry {key!r} has neither sha256 nor sha256_prefix")
        name = key[len(TIMM_PREFIX) :] if key.startswith(TIMM_PREFIX) else key
        out[name] = {k: str(v) for k, v in entry.items()}
    return out


def expected_hash(identifier: str, manifest: Mapping[str, Mapping[str, str]]) -> dict[str, str] | None:
    """The recorded hash entry for an identifier: the manifest's, else ``PUBLISHED_SHA256``'s, else the
    sha256 prefix in torchvision's published file name. None when nothing is recorded."""
    key = identifier[len(TIMM_PREFIX) :] if identifier.startswith(TIMM_PREFIX) else identifier
    if key in manifest:
        return dict(manifest[key])
    if key in PUBLISHED_SHA256:
        return dict(PUBLISHED_SHA256[key])
    if key.startswith(TORCHVISION_PREFIX):
        url = import_library("torchvision.models").get_weight(key[len(TORCHVISION_PREFIX) :]).url
        prefix = hash_prefix_of(url_file_name(url))
        if prefix:
            return {"file": url_file_name(url), "sha256_prefix": prefix, "source": url}
    return None


def verdict(identifier: str, path: Path, digest: str, manifest: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
    """('ok' | 'differs' | 'unknown', message)."""
    entry = expected_hash(identifier, manifest)
    if entry is None:
        return "unknown", f"{path}: no recorded sha256 for {identifier} (sha256 {digest})"
    if entry.get("file") and Path(entry["file"]).suffix != path.suffix:
        return "unknown", f"{path}: the recorded sha256 of {identifier} is for its {entry['file']} (sha256 {digest})"
    want = entry.get("sha256") or entry["sha256_prefix"]
    if digest.startswith(want):
        return "ok", f"{path}: sha256 {digest} matches {identifier}"
    origin = entry.get("source", "the manifest")
    return "differs", (
        f"{path}: sha256 {digest} differs from {want} recorded for {identifier} ({origin}): "
        "not the published file (damaged, or other weights)"
    )


def check_against_manifest(source: WeightsSource, manifest: Mapping[str, Mapping[str, str]]) -> str | None:
    """A warning when the file's sha256 differs from the one recorded for its identifier, else None."""
    if not source.pretrained or source.path is None or source.sha256 is None:
        return None
    status, message = verdict(source.identifier, source.path, source.sha256, manifest)
    return message if status == "differs" else None
