"""Where a weights file is found: a user's file or folder, the Hugging Face hub cache, the torch hub cache,
then a download into those caches when online (``locate_weights``; the order and the checks of cached
files are in the package docstring).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..distributed import get_rank, get_world_size, main_then_broadcast
from ..errors import WeightsError
from ..logging import get_logger
from ._hashes import SHA256_HEX, hash_prefix_of, sha256_file, url_file_name
from ._identifiers import PublishedWeights, import_library, published_weights
from ._sources import SourceKind, WeightsSource

# In a folder, the file names timm's load_state_dict_from_path prefers, in its order.
_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: no download of any weights, hub or torch hub."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub resolves it, read from the environment now.

    (huggingface_hub reads these variables once, at import; reading them here honours later changes.)
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def torch_hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache of downloaded weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _check_prefix(path: Path, digest: str, spec: PublishedWeights) -> None:
    """A file named like the published URL (``name-<sha256 prefix>.ext``) must match its prefix."""
    if spec.url is None or path.name != url_file_name(spec.url):
        return
    prefix = hash_prefix_of(path.name)
    if prefix and not digest.startswith(prefix):
        raise WeightsError(
            f"{path} is not the published {spec.identifier}: its sha256 {digest} does not start with "
            f"{prefix}, the prefix in its name (a truncated or replaced file); delete it and fetch the weights again"
        )


def _check_hf_blob(path: Path, digest: str, spec: PublishedWeights) -> None:
    """A hub cache file whose blob is named by a sha256 (Git LFS files) must have that sha256."""
    blob = path.resolve().name
    if SHA256_HEX.fullmatch(blob) and blob != digest:
        raise WeightsError(
            f"{path} (blob {path.resolve()}) in the Hugging Face cache is damaged: sha256 {digest} instead of "
            f"{blob}; delete the folder {hf_hub_cache_dir() / _hf_folder(spec)} and fetch the weights again"
        )


def _hf_folder(spec: PublishedWeights) -> str:
    return "models--" + (spec.hf_repo or "").replace("/", "--")


def _source(spec: PublishedWeights, kind: SourceKind, path: Path) -> WeightsSource:
    digest = sha256_file(path)
    _check_prefix(path, digest, spec)
    if kind == "hf-cache" or (kind == "download" and spec.hf_repo):
        _check_hf_blob(path, digest, spec)
    return WeightsSource(spec.identifier, kind, path, digest)


def _file_in(path: Path, spec: PublishedWeights) -> Path:
    """The weights file of a user's file or folder."""
    if path.is_file():
        return path
    if not path.exists():
        raise WeightsError(f"weights file {path} for {spec.identifier} does not exist")
    for name in _FOLDER_FILES:
        if (path / name).is_file():
            return path / name
    if spec.url and (path / url_file_name(spec.url)).is_file():
        return path / url_file_name(spec.url)
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if len(found) == 1:
        return found[0]
    listed = ", ".join(p.name for p in found) if found else "no weights file"
    raise WeightsError(
        f"weights folder {path} for {spec.identifier} holds {listed}; expected one of "
        f"{', '.join(_FOLDER_FILES)} or a single {'/'.join(_WEIGHT_SUFFIXES)} file (or give the file itself)"
    )


def in_caches(spec: PublishedWeights) -> WeightsSource | None:
    if spec.hf_repo:
        hub = import_library("huggingface_hub")
        for name in spec.hf_files:
            found = hub.try_to_load_from_cache(
                spec.hf_repo, name, cache_dir=str(hf_hub_cache_dir()), revision=spec.hf_revision
            )
            if isinstance(found, str):  # else None, or the marker of a file known not to exist
                return _source(spec, "hf-cache", Path(found))
    if spec.url:
        cached = torch_hub_checkpoints_dir() / url_file_name(spec.url)
        if cached.is_file():
            return _source(spec, "torch-hub-cache", cached)
    return None


def _download(spec: PublishedWeights) -> Path:
    if spec.hf_repo:
        hub = import_library("huggingface_hub")
        from huggingface_hub.errors import EntryNotFoundError

        for name in spec.hf_files:
            try:
                return Path(
                    hub.hf_hub_download(
                        spec.hf_repo,
                        name,
                        revision=spec.hf_revision,
                        cache_dir=str(hf_hub_cache_dir()),
                        library_name="timm",
                    )
                )
            except EntryNotFoundError:
                continue
        raise WeightsError(f"the Hugging Face repo {spec.hf_repo} has none of {', '.join(spec.hf_files)}")
    assert spec.url is not None  # _spec guarantees a location
    target = torch_hub_checkpoints_dir() / url_file_name(spec.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(spec.url, str(target), hash_prefix_of(target.name), progress=get_rank() == 0)
    return target


def _missing_message(spec: PublishedWeights, reason: str, package: str | None, config_key: str | None) -> str:
    where = f"Hugging Face repo {spec.hf_repo}" if spec.hf_repo else f"URL {spec.url}"
    looked = [f"the Hugging Face cache {hf_hub_cache_dir()}"] if spec.hf_repo else []
    if spec.url:
        looked.append(f"the torch hub cache {torch_hub_checkpoints_dir()}")
    key = f" or the config key {config_key}" if config_key else " or the config's weights key"
    return (
        f"pretrained weights {spec.identifier} ({spec.library}, {where}) are not available: not in "
        f"{' nor '.join(looked)}, and {reason}. Supply them in one of three ways:\n"
        f"  1. a local file: --weights PATH{key} (a state dict .safetensors/.pth, or a folder holding one);\n"
        f"  2. fill the cache: run `{package or '<package>'} weights fetch CONFIG` on a machine with internet, "
        f"and point HF_HOME (Hugging Face cache) and TORCH_HOME (torch hub cache) at that shared cache here;\n"
        f"  3. run online once (HF_HUB_OFFLINE unset), which downloads them into the cache.\n"
        f"To train from random initialization on purpose, set pretrained: false."
    )


def locate(
    spec: PublishedWeights, file: str | Path | None, allow_download: bool | None, package: str | None, config_key: str | None
) -> WeightsSource:
    if file is not None:
        return _source(spec, "file", _file_in(Path(file), spec))
    cached = in_caches(spec)
    if cached is not None:
        return cached
    if allow_download is False:
        reason = "downloading was not allowed here"
    elif is_offline():
        reason = "HF_HUB_OFFLINE is set, so nothing is downloaded"
    else:
        try:
            path = _download(spec)
        except WeightsError:
            raise
        except Exception as e:  # network, HTTP, disk: all mean "not available", with the cause named
            raise WeightsError(
                _missing_message(spec, f"the download failed ({type(e).__name__}: {e})", package, config_key)
            ) from e
        get_logger("pretrained").info("downloaded %s to %s", spec.identifier, path)
        return _source(spec, "download", path)
    raise WeightsError(_missing_message(spec, reason, package, config_key))


def locate_weights(
    identifier: str,
    file: str | Path | None = None,
    *,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
) -> WeightsSource:
    """Find the weights file of ``identifier`` (see the module docstring for the order); never loads it.

    ``allow_download``: None downloads when online, False never. ``package`` and ``config_key`` only
    make the error message name the CLI and the config key. In a multi-process run rank 0 looks (and
    downloads) first and the other ranks then use its file, or look themselves where it is not visible:
    call this on every rank.
    """
    spec = published_weights(identifier)
    if get_world_size() == 1:
        return locate(spec, file, allow_download, package, config_key)
    first = main_then_broadcast(lambda: locate(spec, file, allow_download, package, config_key))
    if get_rank() == 0 or (first.path is not None and first.path.is_file() and sha256_file(first.path) == first.sha256):
        return first
    return locate(spec, file, False, package, config_key)
