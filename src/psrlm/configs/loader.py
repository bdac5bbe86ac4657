"""Reading a config: defaults, then recipes (YAML) in order, then `--set` overrides; every value checked against its
field's type as it is applied, the bool/str settings normalised, then every rule (configs/rules.py: validate) and
the cost warnings (configs/costs.py). And writing one back: `save_config`, `config_to_dict`."""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from psrlm.configs.checks import ConfigError
from psrlm.configs.costs import cost_warnings
from psrlm.configs.recipe import Config
from psrlm.configs.rules import validate
from psrlm.hardware import _parse_bool_setting

log = logging.getLogger("psrlm.configs")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; every user means the number
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _apply(obj: Any, values: dict, source: str, prefix: str = "", sources: dict | None = None) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown config key '{dotted}' (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, source, f"{dotted}.", sources)
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{source}: {dotted}"))
            if sources is not None:
                sources[dotted] = source


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last
    silently, so a recipe with `lr` set twice would run with whichever came later."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    if not key.strip() or any(not k.strip() for k in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    value = _read_yaml(raw, f"--set {text}") if raw.strip() else ""
    return key.strip().split("."), value


def _read_recipe(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: --config takes a recipe file, e.g. configs/demo.yaml")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the recipe as UTF-8"
        ) from None
    raw = _read_yaml(text, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a recipe is a mapping of sections (paths:, search:, ...), got {type(raw).__name__}"
        )
    return raw


def load_config(path: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then each recipe in order (a later one overrides an earlier one key by key), then `--set`
    overrides; unknown keys and values out of range raise ConfigError naming the key and where it was set."""
    return load_config_layers(path, overrides)[0]


def load_config_layers(
    paths: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None
) -> tuple[Config, dict[str, str]]:
    """(config, sources): what `load_config` builds, and for every key not at its default where its value came
    from (the recipe file or `--set ...` that set it last)."""
    cfg = Config()
    sources: dict[str, str] = {}
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in map(Path, paths):
        _apply(cfg, _read_recipe(path), str(path), sources=sources)
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested, f"--set {text}", sources=sources)
    normalise(cfg)
    validate(cfg, sources)
    for line in cost_warnings(cfg, sources):
        log.warning(line)
    return cfg, sources


def normalise(cfg: Config) -> None:
    """bool/str tri-state settings ("true" / "false" / "auto", any case; YAML `true` or the strings older recipes
    used) as True, False or "auto", so what a stage reads and what is saved is one spelling. Before `validate`, so
    a value it refuses is shown as normalised."""
    for e in (cfg.engine, cfg.initdata.teacher_engine):
        e.static_cache = _parse_bool_setting(e.static_cache)
    for t in (cfg.pretrain, cfg.sft, cfg.dpo, cfg.rft, cfg.initdata.prm_train):
        t.bf16 = _parse_bool_setting(t.bf16)


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the effective config next to a stage's output, so every artifact says how it was made."""
    from psrlm.records import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
