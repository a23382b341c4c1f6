"""Stage configs: plain dataclasses with named presets, dotted overrides and a JSON round-trip.

Every stage of the lab (atomic, synth, pretrain, sft, rl, ...) has one dataclass config, defined beside the
code that uses it (e.g. `SFTConfig` in `sft.py`). This module holds the machinery they share:

    cfg = resolve(SFTConfig, preset="quick", overrides={"lr": 1e-3, "lora.r": 8})
    save(cfg, run_dir / "config.json");  load(SFTConfig, run_dir / "config.json") == cfg

A config class lists its presets in a class attribute `PRESETS = {"smoke": {...}, "quick": {...}, ...}`,
each a dict of dotted overrides applied on top of the dataclass defaults, and the old names of renamed keys in
`ALIASES = {"old": "new"}`. Nested dataclasses give the
dotted keys (`model.name_or_path`). The same (preset, overrides) pair is what notebooks take as papermill
parameters, so a notebook run and a CLI run of the same stage are configured identically.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any

from labkit import files


class UserError(Exception):
    """Bad input the user can fix (config, paths, data). The CLI prints the message and exits with code 2."""


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type, or an unknown preset."""


def keys(cls) -> list[str]:
    """All dotted keys of a config class, nested dataclasses expanded."""
    out = []
    for f in dataclasses.fields(cls):
        sub = _field_types(cls)[f.name]
        if dataclasses.is_dataclass(sub):
            out += [f"{f.name}.{k}" for k in keys(sub)]
        else:
            out.append(f.name)
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Build `cls` from a (nested) dict, as written by `to_dict`. Unknown keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    cfg = cls()
    for key, value in data.items():
        cfg = _set(cfg, key, value)
    return cfg


def apply(cfg, overrides: dict[str, Any]):
    """Return a copy of `cfg` with dotted overrides applied. String values are parsed by the field's type."""
    for key, value in overrides.items():
        cfg = _set(cfg, key, value)
    return cfg


def resolve(cls, preset: str | None = None, overrides: dict[str, Any] | None = None):
    """Defaults, then the named preset, then the overrides: the one way every stage builds its config."""
    cfg = cls()
    presets = getattr(cls, "PRESETS", {})
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for {cls.__name__}; presets: {', '.join(presets)}")
        cfg = apply(cfg, presets[preset])
    return apply(cfg, overrides or {})


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['a=1', 'b.c=x'] -> {'a': '1', 'b.c': 'x'} (values stay strings; `apply` parses them by type)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def save(cfg, path: str | Path) -> None:
    """Write config.json atomically (temp file + rename), so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load(cls, path: str | Path):
    return from_dict(cls, json.loads(Path(path).read_text()))


# --- internals -------------------------------------------------------------------------------------------

def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _set(cfg, key: str, value):
    head, _, rest = key.partition(".")
    # A renamed key keeps its old name as an alias (the class lists them as ALIASES = {old: new}), so old
    # config.json files and commands still work; the config and config.json use the new name.
    head = getattr(type(cfg), "ALIASES", {}).get(head, head)
    names = [f.name for f in dataclasses.fields(cfg)]
    if head not in names:
        raise ConfigError(_unknown_key_message(type(cfg), key))
    ftype = _field_types(type(cfg))[head]
    if dataclasses.is_dataclass(ftype):
        if not rest:
            if isinstance(value, dict):
                return dataclasses.replace(cfg, **{head: from_dict(ftype, value)})
            raise ConfigError(f"{key!r} is a group of settings; set one of its keys: "
                              + ", ".join(f"{head}.{k}" for k in keys(ftype)))
        try:
            return dataclasses.replace(cfg, **{head: _set(getattr(cfg, head), rest, value)})
        except ConfigError as e:
            raise ConfigError(str(e).replace(f"key {rest!r}", f"key {key!r}", 1)) from None
    if rest:
        if _base(ftype) is dict:
            d = dict(getattr(cfg, head))
            d[rest] = _coerce(_args(ftype)[1], value, key)
            return dataclasses.replace(cfg, **{head: d})
        raise ConfigError(_unknown_key_message(type(cfg), key))
    return dataclasses.replace(cfg, **{head: _coerce(ftype, value, key)})


def _unknown_key_message(cls, key: str) -> str:
    valid = keys(cls)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r} for {cls.__name__}.{hint} Valid keys: {', '.join(valid)}"


def _base(tp):
    return typing.get_origin(tp) or tp


def _args(tp):
    return typing.get_args(tp)


def _coerce(tp, value, key: str):
    """Check (and, for strings from the command line, parse) `value` against the annotated type `tp`."""
    def bad(why: str = ""):
        return ConfigError(f"bad value {value!r} for config key {key!r}: expected {_type_name(tp)}{why}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = _args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, key)
            except ConfigError:
                pass
        raise bad()
    if origin is typing.Literal:
        choices = _args(tp)
        for c in choices:
            if value == c or (isinstance(value, str) and str(c) == value):
                return c
        raise bad(f" (one of {', '.join(map(repr, choices))})")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if origin in (list, tuple):
        if isinstance(value, str):
            value = _parse_sequence(value)
        if not isinstance(value, (list, tuple)):
            raise bad()
        item_tp = _args(tp)[0] if _args(tp) else Any
        items = [_coerce(item_tp, v, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise bad(" (a JSON object)") from None
        if not isinstance(value, dict):
            raise bad()
        k_tp, v_tp = _args(tp) or (Any, Any)
        return {_coerce(k_tp, k, key): _coerce(v_tp, v, f"{key}.{k}") for k, v in value.items()}
    raise bad()


def _parse_sequence(text: str) -> list:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return [] if not text else [t.strip() for t in text.split(",")]


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")
