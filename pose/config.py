"""Typed configs: plain dataclasses built from dicts, with unknown keys as errors.

Every config in poselab is a (possibly nested) dataclass. :func:`from_dict` builds one from a plain
dict (parsed JSON/YAML) and refuses keys the dataclass does not declare, naming the dotted path;
:func:`apply_overrides` applies ``key=value`` strings (``train.lr=0.002``) the same way.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pose.names import suggest_keys, with_suggestion

T = TypeVar("T")

KEYS_HINT = "`poselab train CONFIG --print-config` prints every key"
"""What unknown-key errors say when no valid key is close."""


class ConfigError(ValueError):
    """A config key or value that does not fit the typed config."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of dataclass ``cls`` (sections and leaves; nested dataclasses, also optional
    ones, are walked), each after ``prefix``."""
    head = f"{prefix}." if prefix else ""
    hints = _field_types(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        out.append(head + f.name)
        tp = hints[f.name]
        for inner in (tp, *typing.get_args(tp)):
            if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                out += field_paths(inner, head + f.name)
                break
    return out


def dict_paths(data: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a plain nested dict (sections and leaves), each after ``prefix``."""
    out: list[str] = []
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.append(key)
        if isinstance(v, dict):
            out += dict_paths(v, key)
    return out


def unknown_key_message(key: str, paths: list[str], context: str = "") -> str:
    """``unknown config key: <key's first unknown part>[ context]; did you mean: ...?`` for the dotted
    ``key`` among the config's dotted ``paths`` (:func:`dict_paths`), else the same with :data:`KEYS_HINT`."""
    known = set(paths)
    parts = key.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    bad = next((p for p in prefixes if p not in known), key)
    where = f" {context}" if context else ""
    return f"unknown config key: {bad}{where}; {suggest_keys(key, paths, hint=KEYS_HINT)}"


def _convert(value: Any, tp: Any, path: str, root: tuple[type, str] | None = None) -> Any:
    """``value`` checked and converted to type ``tp`` (``path``: its dotted key, for errors; ``root``:
    the outermost config class and its prefix, whose keys unknown-key errors suggest from)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path, root)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(with_suggestion(f"{path}: {value!r} is not one of {list(args)}", str(value),
                                              [str(a) for a in args]))
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, _prefix=path, _root=root)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, _prefix: str = "", _root: tuple[type, str] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError` naming them and the
    closest valid keys of the whole config (``_prefix``: the dotted key of a nested call; ``_root``:
    the outermost class and its prefix)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{_prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    root = (cls, _prefix) if _root is None else _root
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{_prefix}." if _prefix else ""
        keys = [where + str(k) for k in unknown]
        raise ConfigError(f"unknown config key(s): {', '.join(keys)}; "
                          f"{suggest_keys(keys, field_paths(*root), hint=KEYS_HINT)}")
    kwargs = {}
    for key, value in data.items():
        path = f"{_prefix}.{key}" if _prefix else key
        kwargs[key] = _convert(value, hints[key], path, root)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{_prefix or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a dataclass config (tuples become lists, JSON-ready)."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (for MLflow params and tables)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def parse_value(text: str) -> Any:
    """Parse an override value: JSON when it parses (numbers, bools, null, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied (dotted keys for nested fields)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(unknown_key_message(key.strip(), dict_paths(data),
                                                      f"(in override '{item}')"))
            if i == len(parts) - 1:
                node[part] = parse_value(text)
            else:
                node = node[part]
    return from_dict(type(cfg), data)


def read_config_data(path: str | Path) -> dict:
    """The plain dict of a JSON (or YAML) config file; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml  # PyYAML ships with ray[default]

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: malformed YAML ({e})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: malformed JSON ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config_file(cls: type[T], path: str | Path) -> T:
    """Load a JSON (or YAML) config file into dataclass ``cls``."""
    data = read_config_data(path)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
