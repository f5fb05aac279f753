"""Dataclass configs from YAML, with command-line overrides and errors that name the key and file.

A package declares its config as (nested) dataclasses with type hints and defaults::

    @dataclass
    class OptimConfig:
        lr: float = 1e-3

    @dataclass
    class TrainConfig:
        optim: OptimConfig = field(default_factory=OptimConfig)

    cfg = load_config(TrainConfig, "configs/baseline.yaml", ["optim.lr=0.01"])

An unknown key, a wrong type or a malformed override is a ``ConfigError`` naming the key and where it
came from (the file, or ``--set``). Values are checked against the type hints: ``bool``, ``int``,
``float`` (an int is accepted), ``str``, ``Path``, ``Optional[...]``, ``Literal[...]``, ``list[...]``,
``tuple[...]``, ``dict[str, ...]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from .errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert containers; raise ConfigError if it does not fit."""
    where = f"key '{key}' in {source}"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, source, prefix=f"{key}.")
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_convert(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, key, source): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)} in the config class")


def _build(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        section = f"under '{prefix[:-1]}'" if prefix else "at the top level"
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' in {source}; valid keys {section}: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _convert(data[name], hints[name], prefix + name, source) for name in data}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config in {source}: {e}") from None
    return obj


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, cls: type, source: str) -> None:
    """Put ``value`` at ``a.b.c`` in the raw data, checking each step against the config classes."""
    parts = dotted.split(".")
    node, tp = data, cls
    for i, part in enumerate(parts):
        if dataclasses.is_dataclass(tp):
            names = {f.name for f in dataclasses.fields(tp)}
            if part not in names:
                where = f"under '{'.'.join(parts[:i])}'" if i else "at the top level"
                raise ConfigError(f"unknown key '{dotted}' in {source}; valid keys {where}: {', '.join(sorted(names))}")
            child_tp = typing.get_type_hints(tp)[part]
        elif typing.get_origin(tp) is dict or tp is dict:
            args = typing.get_args(tp)
            child_tp = args[1] if args else Any
        else:
            raise ConfigError(f"unknown key '{dotted}' in {source}: '{'.'.join(parts[:i])}' has no sub-keys")
        if i == len(parts) - 1:
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node, tp = child, child_tp


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from its defaults, then the YAML file ``path``, then ``key.sub=value`` overrides.

    Override values are parsed as YAML (``0.01`` is a float, ``[1, 2]`` a list, ``null`` None).
    """
    data: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys, not {type(loaded).__name__}")
        data = loaded
        _build(cls, data, source)  # report file errors against the file, before overrides mix in
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} (--set) must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value, cls, f"--set {item}")
    src = source if not overrides else f"{source} with --set {' '.join(overrides)}"
    return _build(cls, data, src)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (lists for tuples, strings for paths) for YAML, JSON and checkpoints."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "a checkpoint") -> T:
    """Rebuild a config saved with ``config_to_dict`` (for example from a checkpoint's ``"config"``)."""
    return _build(cls, data, source)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return p


def packaged_config_dir(package: str) -> Path:
    """The ``configs/`` folder of an installed package (in the wheel) or of its source checkout."""
    mod = importlib.import_module(package)
    pkg_dir = Path(mod.__file__).resolve().parent  # type: ignore[arg-type]
    inside = pkg_dir / "configs"  # wheels: configs/ is force-included into the package
    if inside.is_dir():
        return inside
    return pkg_dir.parents[1] / "configs"  # editable install: <package root>/src/<module>/ -> <package root>/configs


def resolve_config_path(package: str, name_or_path: str | Path) -> Path:
    """A YAML path as given, or the name of one of the package's own configs (``baseline`` -> configs/baseline.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    cfg_dir = packaged_config_dir(package)
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    candidate = cfg_dir / f"{stem}.yaml"
    if p.parent == Path(".") and candidate.is_file():
        return candidate
    known = sorted(q.stem for q in cfg_dir.glob("*.yaml")) if cfg_dir.is_dir() else []
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor one of {package}'s configs ({', '.join(known) or 'none found'})"
    )
