"""Weights identifiers: parsing (``resnet50.a1_in1k``, ``torchvision:DenseNet201_Weights.IMAGENET1K_V1``), the
canonical form recorded in metadata, and where the library publishes each one (``published_weights``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from ..errors import WeightsError

Library = Literal["timm", "torchvision"]

TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision:"

# timm fetches model.safetensors from the hub and falls back to pytorch_model.bin (timm/models/_hub.py).
_HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class PublishedWeights:
    """Where the weights of one identifier are published."""

    library: Library
    name: str  # timm ``arch.tag`` or torchvision ``Enum.MEMBER``
    identifier: str  # canonical: ``arch.tag`` or ``torchvision:Enum.MEMBER``
    hf_repo: str | None
    hf_revision: str | None
    hf_files: tuple[str, ...]
    url: str | None


def import_library(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        top = name.partition(".")[0]
        raise WeightsError(f"pretrained weights of this kind need the '{top}' package; pip install {top}") from None


def _close(value: str, candidates: Sequence[str], n: int = 5) -> str:
    matches = difflib.get_close_matches(value, candidates, n=n, cutoff=0.6)
    return f"; close matches: {', '.join(matches)}" if matches else ""


def torchvision_weights_enums() -> dict[str, Any]:
    """``{model name: weights enum class}`` for every torchvision model that has weights."""
    tvm = import_library("torchvision.models")
    out = {}
    for model_name in tvm.list_models():
        try:
            out[model_name] = tvm.get_model_weights(model_name)
        except (ValueError, KeyError):  # a builder without a weights argument
            continue
    return out


def _parse_torchvision(value: str, *, require_weights: bool) -> str:
    enums = torchvision_weights_enums()
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
    timm = import_library("timm")
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


def published_weights(identifier: str) -> PublishedWeights:
    library, name = parse_identifier(identifier)
    if library == "torchvision":
        weights = import_library("torchvision.models").get_weight(name)
        return PublishedWeights(library, name, TORCHVISION_PREFIX + name, None, None, (), weights.url)
    cfg = import_library("timm.models").get_pretrained_cfg(name)
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
    return PublishedWeights(library, name, name, repo or None, revision or None, files if repo else (), cfg.url or None)
