"""Pipeline configuration: embedded defaults, an optional YAML file and ``key=value`` overrides.

YAML is read with ``yaml.safe_load`` only. Every key must exist in the embedded defaults, so a typo
is an error that names the key instead of a setting that silently does nothing.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

import yaml

from gap_spark.core.errors import ConfigError
from gap_spark.core.settings import Settings

__all__ = ["Config", "default_config_dict", "load_config", "parse_override"]

# Sections whose keys are free-form (Spark settings, for example).
FREE_FORM_SECTIONS = frozenset({"spark.conf"})


def _load_yaml_text(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    return data


def default_config_dict() -> dict:
    """The embedded defaults as a fresh nested dict."""
    text = resources.files("gap_spark").joinpath("defaults.yaml").read_text(encoding="utf-8")
    return _load_yaml_text(text, "embedded defaults")


def _merge(base: dict, update: Mapping, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if prefix.rstrip(".") in FREE_FORM_SECTIONS:
            base[key] = value
            continue
        if key not in base:
            raise ConfigError(f"unknown config key '{dotted}'")
        if isinstance(base[key], dict) and dotted not in FREE_FORM_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}' is a section and needs a mapping, got {value!r}")
            _merge(base[key], value, dotted + ".")
        elif dotted in FREE_FORM_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}' needs a mapping, got {value!r}")
            base[key].update(value)
        else:
            if isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}' is a value, not a section")
            base[key] = value


def parse_override(text: str) -> dict:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    value = _load_yaml_text(f"v: {raw}" if raw.strip() else "v: null", f"override '{text}'")["v"]
    # Spark settings keep their dots: spark.conf.spark.sql.shuffle.partitions=4
    for free in FREE_FORM_SECTIONS:
        if key.startswith(free + "."):
            nested: dict = {key[len(free) + 1:]: value}
            for part in reversed(free.split(".")):
                nested = {part: nested}
            return nested
    nested = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


@dataclass(frozen=True)
class Config:
    """The merged configuration: the raw mapping (for fingerprints and dumps) and its checked settings.

    Stages read values through :attr:`settings` only; :meth:`get` and :meth:`section` serve the
    pipeline's fingerprints and the config dumps.
    """

    data: dict

    @cached_property
    def settings(self) -> Settings:
        """Every section checked once (:mod:`gap_spark.core.settings`); a bad value raises ConfigError."""
        return Settings.from_mapping(self.data)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown config key '{dotted}'")
            node = node[part]
        return copy.deepcopy(node)

    def section(self, name: str) -> dict:
        value = self.get(name)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{name}' is not a section")
        return value

    def with_overrides(self, overrides: Mapping | None = None, sets: Iterable[str] = ()) -> "Config":
        data = copy.deepcopy(self.data)
        if overrides:
            _merge(data, _drop_none_leaves(overrides))
        for text in sets:
            _merge(data, parse_override(text))
        config = Config(data)
        config.settings  # noqa: B018 - check every key now, before any work
        return config

    def to_dict(self) -> dict:
        return copy.deepcopy(self.data)


def _drop_none_leaves(tree: Mapping[str, Any]) -> dict[str, Any]:
    """CLI options that were not given arrive as None and must not override the config."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            sub = _drop_none_leaves(value)
            if sub:
                out[key] = sub
        elif value is not None:
            out[key] = value
    return out


def load_config(path: str | None = None, sets: Iterable[str] = (), overrides: Mapping | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (a local path or URI), then ``overrides``, then ``sets``."""
    data = default_config_dict()
    if path:
        from gap_spark.core import fs

        if not fs.exists(path):
            raise ConfigError(f"config file not found: {path}")
        _merge(data, _load_yaml_text(fs.read_text(path), str(path)))
    return Config(data).with_overrides(overrides, sets)
