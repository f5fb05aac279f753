"""Pretrained backbone weights resolved the way timm and torchvision do it, offline once cached.

Identifiers name the weights, not only the architecture:

* timm: ``resnet50.a1_in1k`` or ``timm:resnet50.a1_in1k`` (architecture and pretrained tag; a name
  without a tag is an error, since timm would silently pick its default weights);
* torchvision: ``torchvision:DenseNet201_Weights.IMAGENET1K_V1`` (a weights enum; ``.DEFAULT`` resolves
  to the member it stands for).

``locate_weights`` looks, in this order, in

1. a local file or folder given by the user (``--weights PATH`` or a config key);
2. the Hugging Face hub cache for timm weights hosted on the hub (the file timm would fetch:
   ``model.safetensors``, else ``pytorch_model.bin``; ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), then the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file name
   of the URL>``) for torchvision weights and for timm weights published by URL;
3. a download into those caches through ``huggingface_hub.hf_hub_download`` /
   ``torch.hub.download_url_to_file``, only when online: ``HF_HUB_OFFLINE`` (or
   ``TRANSFORMERS_OFFLINE``) unset and the caller does not forbid it.

Weights found nowhere are one ``WeightsError`` naming the model and the three ways to supply them.
Cached files are checked: a torch hub file whose name carries a sha256 prefix (torchvision's
``densenet201-c1103571.pth``) must match it, as ``torch.hub``'s ``check_hash`` requires of downloads,
and a Hugging Face cache file stored as a blob named by its sha256 must match that name. Every
``WeightsSource`` records the sha256 of the file it names, for the run's metadata.

Files are read with ``weights_only=True`` (timm 1.0's own file loader, used by ``create_timm_model``,
does the same) or as safetensors: nothing is unpickled.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn
from torch.hub import HASH_REGEX

from .distributed import get_rank, get_world_size, main_then_broadcast
from .errors import ConfigError, WeightsError
from .logging import get_logger
from .weights import load_weights_file

Library = Literal["timm", "torchvision"]
SourceKind = Literal["file", "hf-cache", "torch-hub-cache", "download", "random"]

TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision:"

# timm fetches model.safetensors from the hub and falls back to pytorch_model.bin (timm/models/_hub.py).
_HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")
# In a folder, the file names timm's load_state_dict_from_path prefers, in its order.
_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

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


@dataclass(frozen=True)
class WeightsSource:
    """Which weights a model got and from where; ``sha256`` is the hex digest of the file (None if random)."""

    identifier: str
    kind: SourceKind
    path: Path | None
    sha256: str | None

    @property
    def pretrained(self) -> bool:
        return self.kind != "random"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for a run's metadata."""
        return {
            "identifier": self.identifier,
            "kind": self.kind,
            "path": str(self.path) if self.path is not None else None,
            "sha256": self.sha256,
            "pretrained": self.pretrained,
        }

    def describe(self) -> str:
        """One line for logs and reports."""
        if not self.pretrained:
            return f"{self.identifier}: RANDOM initialization (pretrained: false)"
        digest = f" (sha256 {self.sha256[:12]}…)" if self.sha256 else ""
        return f"{self.identifier} from {self.kind} {self.path}{digest}"


@dataclass(frozen=True)
class WeightsRequest:
    """One set of weights a config asks for (``role`` tells several apart, e.g. gaze's face and eye)."""

    identifier: str
    pretrained: bool
    file: str | None = None
    role: str = "backbone"


@dataclass(frozen=True)
class _Spec:
    """Where the weights of one identifier are published."""

    library: Library
    name: str  # timm ``arch.tag`` or torchvision ``Enum.MEMBER``
    identifier: str  # canonical: ``arch.tag`` or ``torchvision:Enum.MEMBER``
    hf_repo: str | None
    hf_revision: str | None
    hf_files: tuple[str, ...]
    url: str | None


# ---------------------------------------------------------------------------------------------------
# identifiers


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        top = name.partition(".")[0]
        raise WeightsError(f"pretrained weights of this kind need the '{top}' package; pip install {top}") from None


def _close(value: str, candidates: Sequence[str], n: int = 5) -> str:
    matches = difflib.get_close_matches(value, candidates, n=n, cutoff=0.6)
    return f"; close matches: {', '.join(matches)}" if matches else ""


def _torchvision_weights_enums() -> dict[str, Any]:
    """``{model name: weights enum class}`` for every torchvision model that has weights."""
    tvm = _import("torchvision.models")
    out = {}
    for model_name in tvm.list_models():
        try:
            out[model_name] = tvm.get_model_weights(model_name)
        except (ValueError, KeyError):  # a builder without a weights argument
            continue
    return out


def _parse_torchvision(value: str, *, require_weights: bool) -> str:
    enums = _torchvision_weights_enums()
    if "." not in value:
        if value in enums:
            if not require_weights:
                return value
            members = ", ".join(f"torchvision:{enums[value].__name__}.{m}" for m in enums[value].__members__)
            raise WeightsError(
                f"'torchvision:{value}' names a model, not its weights; say which weights, one of: {members}"
            )
        raise WeightsError(f"unknown torchvision model or weights 'torchvision:{value}'{_close(value, list(enums))}")
    enum_name, _, member = value.partition(".")
    classes = {cls.__name__: cls for cls in enums.values()}
    cls = classes.get(enum_name)
    if cls is None or member not in cls.__members__:
        every = [f"{c.__name__}.{m}" for c in classes.values() for m in c.__members__]
        known = f"; {enum_name} has {', '.join(cls.__members__)}" if cls is not None else ""
        raise WeightsError(f"unknown torchvision weights 'torchvision:{value}'{known}{_close(value, every)}")
    return f"{cls.__name__}.{cls[member].name}"  # DEFAULT -> the member it aliases


def _parse_timm(value: str, *, require_weights: bool) -> str:
    timm = _import("timm")
    arch, tag = timm.models.split_model_name_tag(value)
    if not timm.is_model(arch):
        raise WeightsError(f"unknown timm model '{arch}' in '{value}'{_close(arch, timm.list_models())}")
    if not tag:
        if not require_weights:
            return arch
        tags = timm.list_pretrained(f"{arch}.*")
        listed = ", ".join(tags[:12]) + (f" (+{len(tags) - 12} more)" if len(tags) > 12 else "")
        raise WeightsError(
            f"'{value}' does not say which weights: add timm's pretrained tag, e.g. {listed or 'none published'}"
        )
    tags = timm.list_pretrained(f"{arch}.*")
    if f"{arch}.{tag}" not in tags:
        raise WeightsError(
            f"timm has no pretrained weights '{value}'; published for {arch}: {', '.join(tags) or 'none'}"
        )
    return f"{arch}.{tag}"


def parse_identifier(identifier: str, *, require_weights: bool = True) -> tuple[Library, str]:
    """``('timm', 'resnet50.a1_in1k')`` or ``('torchvision', 'DenseNet201_Weights.IMAGENET1K_V1')``.

    Unprefixed names are timm's. Unknown names are a WeightsError listing close matches. With
    ``require_weights=False`` a bare architecture (``resnet18``, ``torchvision:densenet201``) is accepted,
    for random initialization and its preprocessing.
    """
    value = identifier.strip()
    if value.startswith(TORCHVISION_PREFIX):
        return "torchvision", _parse_torchvision(value[len(TORCHVISION_PREFIX) :], require_weights=require_weights)
    if value.startswith(TIMM_PREFIX):
        value = value[len(TIMM_PREFIX) :]
    if not value:
        raise WeightsError(f"empty weights identifier {identifier!r}")
    return "timm", _parse_timm(value, require_weights=require_weights)


def canonical_identifier(identifier: str) -> str:
    """The form recorded in metadata and manifests: ``arch.tag`` or ``torchvision:Enum.MEMBER``."""
    library, name = parse_identifier(identifier)
    return name if library == "timm" else TORCHVISION_PREFIX + name


def _spec(identifier: str) -> _Spec:
    library, name = parse_identifier(identifier)
    if library == "torchvision":
        weights = _import("torchvision.models").get_weight(name)
        return _Spec(library, name, TORCHVISION_PREFIX + name, None, None, (), weights.url)
    cfg = _import("timm.models").get_pretrained_cfg(name)
    repo, revision = None, None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
    if cfg.hf_hub_filename:
        files: tuple[str, ...] = (cfg.hf_hub_filename,)
        if cfg.hf_hub_filename.endswith(".bin"):  # timm looks for a safetensors twin first
            files = (cfg.hf_hub_filename[:-4] + ".safetensors", *files)
    else:
        files = _HF_DEFAULT_FILES
    if not repo and not cfg.url:
        raise WeightsError(f"timm publishes no download location for {name}; give a local weights file")
    return _Spec(library, name, name, repo or None, revision or None, files if repo else (), cfg.url or None)


# ---------------------------------------------------------------------------------------------------
# caches and hashes

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


def _url_file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def _hash_prefix_of(file_name: str) -> str | None:
    match = HASH_REGEX.search(file_name)
    return match.group(1) if match and match.group(1) else None


def _check_prefix(path: Path, digest: str, spec: _Spec) -> None:
    """A file named like the published URL (``name-<sha256 prefix>.ext``) must match its prefix."""
    if spec.url is None or path.name != _url_file_name(spec.url):
        return
    prefix = _hash_prefix_of(path.name)
    if prefix and not digest.startswith(prefix):
        raise WeightsError(
            f"{path} is not the published {spec.identifier}: its sha256 {digest} does not start with "
            f"{prefix}, the prefix in its name (a truncated or replaced file); delete it and fetch the weights again"
        )


def _check_hf_blob(path: Path, digest: str, spec: _Spec) -> None:
    """A hub cache file whose blob is named by a sha256 (Git LFS files) must have that sha256."""
    blob = path.resolve().name
    if _SHA256_HEX.fullmatch(blob) and blob != digest:
        raise WeightsError(
            f"{path} (blob {path.resolve()}) in the Hugging Face cache is damaged: sha256 {digest} instead of "
            f"{blob}; delete the folder {hf_hub_cache_dir() / _hf_folder(spec)} and fetch the weights again"
        )


def _hf_folder(spec: _Spec) -> str:
    return "models--" + (spec.hf_repo or "").replace("/", "--")


def _source(spec: _Spec, kind: SourceKind, path: Path) -> WeightsSource:
    digest = sha256_file(path)
    _check_prefix(path, digest, spec)
    if kind == "hf-cache" or (kind == "download" and spec.hf_repo):
        _check_hf_blob(path, digest, spec)
    return WeightsSource(spec.identifier, kind, path, digest)


def _file_in(path: Path, spec: _Spec) -> Path:
    """The weights file of a user's file or folder."""
    if path.is_file():
        return path
    if not path.exists():
        raise WeightsError(f"weights file {path} for {spec.identifier} does not exist")
    for name in _FOLDER_FILES:
        if (path / name).is_file():
            return path / name
    if spec.url and (path / _url_file_name(spec.url)).is_file():
        return path / _url_file_name(spec.url)
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if len(found) == 1:
        return found[0]
    listed = ", ".join(p.name for p in found) if found else "no weights file"
    raise WeightsError(
        f"weights folder {path} for {spec.identifier} holds {listed}; expected one of "
        f"{', '.join(_FOLDER_FILES)} or a single {'/'.join(_WEIGHT_SUFFIXES)} file (or give the file itself)"
    )


def _in_caches(spec: _Spec) -> WeightsSource | None:
    if spec.hf_repo:
        hub = _import("huggingface_hub")
        for name in spec.hf_files:
            found = hub.try_to_load_from_cache(
                spec.hf_repo, name, cache_dir=str(hf_hub_cache_dir()), revision=spec.hf_revision
            )
            if isinstance(found, str):  # else None, or the marker of a file known not to exist
                return _source(spec, "hf-cache", Path(found))
    if spec.url:
        cached = torch_hub_checkpoints_dir() / _url_file_name(spec.url)
        if cached.is_file():
            return _source(spec, "torch-hub-cache", cached)
    return None


def _download(spec: _Spec) -> Path:
    if spec.hf_repo:
        hub = _import("huggingface_hub")
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
    target = torch_hub_checkpoints_dir() / _url_file_name(spec.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(spec.url, str(target), _hash_prefix_of(target.name), progress=get_rank() == 0)
    return target


def _missing_message(spec: _Spec, reason: str, package: str | None, config_key: str | None) -> str:
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


def _locate(
    spec: _Spec, file: str | Path | None, allow_download: bool | None, package: str | None, config_key: str | None
) -> WeightsSource:
    if file is not None:
        return _source(spec, "file", _file_in(Path(file), spec))
    cached = _in_caches(spec)
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
    spec = _spec(identifier)
    if get_world_size() == 1:
        return _locate(spec, file, allow_download, package, config_key)
    first = main_then_broadcast(lambda: _locate(spec, file, allow_download, package, config_key))
    if get_rank() == 0 or (first.path is not None and first.path.is_file() and sha256_file(first.path) == first.sha256):
        return first
    return _locate(spec, file, False, package, config_key)


def random_init(identifier: str) -> WeightsSource:
    """The record of a model that starts from random initialization (``pretrained: false``)."""
    return WeightsSource(identifier.strip(), "random", None, None)


# ---------------------------------------------------------------------------------------------------
# building models and reading state dicts


def _first_line(e: Exception) -> str:
    """The start of an exception's message, on one line (torch's load errors run to thousands of keys)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}{'…' if len(text) > 400 else ''}"


_BUILDERS = {"timm": "create_timm_model", "torchvision": "create_torchvision_model / torchvision_state_dict"}


def _name_for(identifier: str, library: Library, *, pretrained: bool, file: str | Path | None = None) -> str:
    """The parsed name of an identifier that must belong to ``library``; a file needs pretrained weights."""
    if not pretrained and file is not None:
        raise WeightsError(f"{identifier}: a weights file ({file}) was given but pretrained is false")
    found, name = parse_identifier(identifier, require_weights=pretrained)
    if found != library:
        raise WeightsError(f"{identifier} is a {found} identifier; use {_BUILDERS[found]}")
    return name


def create_timm_model(
    identifier: str,
    *,
    pretrained: bool,
    file: str | Path | None = None,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
    **timm_kwargs: Any,
) -> tuple[nn.Module, WeightsSource]:
    """``timm.create_model`` with its weights from ``locate_weights``; returns the model and its source.

    The weights go through timm's own loader (``pretrained_cfg_overlay=dict(file=...)``: timm 1.0's
    ``load_state_dict`` reads with ``weights_only=True``), so timm adapts them as usual to
    ``num_classes``/``in_chans``/``features_only``. ``pretrained=False`` builds a randomly initialized
    model (a bare architecture name is fine then). A ``pretrained_cfg_overlay`` in ``timm_kwargs``
    is kept (its ``file`` replaced by the located one).
    """
    timm = _import("timm")
    name = _name_for(identifier, "timm", pretrained=pretrained, file=file)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **timm_kwargs), random_init(identifier)
    source = locate_weights(identifier, file, allow_download=allow_download, package=package, config_key=config_key)
    overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay["file"] = str(source.path)
    # timm loads non-strictly when num_classes differs from the weights' (it drops the classifier and
    # would leave any other missing tensor random too): load strictly with the published head, then
    # replace the head.
    num_classes = timm_kwargs.pop("num_classes", None)
    try:
        model = timm.create_model(source.identifier, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs)
        if num_classes is not None and num_classes != getattr(model, "num_classes", num_classes):
            model.reset_classifier(num_classes)
    except Exception as e:  # timm raises RuntimeError/KeyError/UnpicklingError for a file that does not fit
        raise WeightsError(f"cannot load {source.path} into timm's {source.identifier}: {_first_line(e)}") from e
    get_logger("pretrained").info("weights: %s", source.describe())
    return model, source


# Before torch 0.4 DenseNet layers held submodules named 'norm.1', 'conv.2', ...; torchvision's
# published DenseNet files still use those names, and its builders rename them on load.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _torchvision_key_fixes(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not name.startswith("DenseNet"):
        return state
    out = {}
    for key, value in state.items():
        m = _DENSENET_OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def torchvision_state_dict(
    identifier: str,
    file: str | Path | None = None,
    *,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
) -> tuple[dict[str, torch.Tensor], WeightsSource]:
    """The state dict of torchvision weights (read with ``weights_only=True``) and where it came from.

    Key names are those of today's torchvision modules (DenseNet's legacy ``norm.1`` names are renamed
    as torchvision's builder does), so it loads into ``torchvision.models.<model>(weights=None)``.
    """
    name = _name_for(identifier, "torchvision", pretrained=True)
    source = locate_weights(identifier, file, allow_download=allow_download, package=package, config_key=config_key)
    assert source.path is not None
    return _torchvision_key_fixes(name, load_weights_file(source.path)), source


def _torchvision_model_name(enum_name: str) -> str:
    for model_name, cls in _torchvision_weights_enums().items():
        if cls.__name__ == enum_name:
            return model_name
    raise WeightsError(f"no torchvision model uses {enum_name}")


def create_torchvision_model(
    identifier: str,
    *,
    pretrained: bool,
    file: str | Path | None = None,
    allow_download: bool | None = None,
    package: str | None = None,
    config_key: str | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, WeightsSource]:
    """``torchvision.models.get_model`` with weights from ``torchvision_state_dict`` (strict load).

    ``pretrained=False`` accepts a model name too (``torchvision:densenet201``).
    """
    tvm = _import("torchvision.models")
    name = _name_for(identifier, "torchvision", pretrained=pretrained, file=file)
    enum_name = name.partition(".")[0]
    if not pretrained:
        model_name = _torchvision_model_name(enum_name) if "." in name else name
        return tvm.get_model(model_name, weights=None, **model_kwargs), random_init(identifier)
    state, source = torchvision_state_dict(  # before building: missing weights fail fast
        identifier, file, allow_download=allow_download, package=package, config_key=config_key
    )
    model = tvm.get_model(_torchvision_model_name(enum_name), weights=None, **model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{source.path} does not fit torchvision's {enum_name} model: {_first_line(e)}") from e
    get_logger("pretrained").info("weights: %s", source.describe())
    return model, source


# ---------------------------------------------------------------------------------------------------
# preprocessing


def preprocessing_for(identifier: str, *, overlay: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input preprocessing the weights were trained with, from their own config.

    Returns ``mean``, ``std`` (lists, RGB, for inputs in [0, 1]), ``interpolation`` (``'bicubic'``...),
    ``input_size`` ([C, H, W]), ``crop_pct`` (crop size / resize size) and ``crop_mode`` (timm) or
    ``resize_size`` (torchvision). timm: ``timm.data.resolve_data_config`` over the tag's pretrained cfg,
    updated by ``overlay`` (the same keys as timm's ``pretrained_cfg_overlay``); torchvision: the
    weights' ``transforms()``. A bare architecture gives its default weights' preprocessing.
    """
    library, name = parse_identifier(identifier, require_weights=False)
    if library == "timm":
        timm = _import("timm")
        from timm.data import resolve_data_config

        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        cfg.update(overlay or {})
        data = resolve_data_config({}, pretrained_cfg=cfg)
        return {
            "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]],
            "interpolation": str(data["interpolation"]),
            "input_size": [int(v) for v in data["input_size"]],
            "crop_pct": float(data["crop_pct"]),
            "crop_mode": str(data.get("crop_mode", "center")),
        }
    if overlay:
        raise WeightsError(f"a preprocessing overlay applies to timm weights only, not to {identifier}")
    tvm = _import("torchvision.models")
    weights = tvm.get_weight(name) if "." in name else tvm.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    if not all(hasattr(transform, a) for a in ("mean", "std", "crop_size", "resize_size", "interpolation")):
        raise WeightsError(f"{identifier} does not come with image-classification preprocessing")
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return {
        "mean": [float(v) for v in transform.mean],
        "std": [float(v) for v in transform.std],
        "interpolation": str(transform.interpolation.value),
        "input_size": [3, crop, crop],
        "crop_pct": crop / resize,
        "resize_size": resize,
    }


# ---------------------------------------------------------------------------------------------------
# manifests of known hashes


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
        if digest is not None and not (isinstance(digest, str) and _SHA256_HEX.fullmatch(digest)):
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
        url = _import("torchvision.models").get_weight(key[len(TORCHVISION_PREFIX) :]).url
        prefix = _hash_prefix_of(_url_file_name(url))
        if prefix:
            return {"file": _url_file_name(url), "sha256_prefix": prefix, "source": url}
    return None


def _verdict(identifier: str, path: Path, digest: str, manifest: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
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
    status, message = _verdict(source.identifier, source.path, source.sha256, manifest)
    return message if status == "differs" else None


# ---------------------------------------------------------------------------------------------------
# the `<package> weights` command


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
    spec = _spec(request.identifier)
    if request.file is not None:
        source = _locate(spec, request.file, False, None, None)
        return source.kind, source
    cached = _in_caches(spec)
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
        status, message = _verdict(identifier, path, sha256_file(path), manifest)
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
        status, message = _verdict(source.identifier, source.path, source.sha256, manifest)
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
