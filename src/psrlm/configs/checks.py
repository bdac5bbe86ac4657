"""The vocabulary every section's checks are written in: a rule is `(key, holds, what it must be)`, and a rule that
does not hold becomes one line of a ConfigError at load (configs/rules.py: validate)."""

from __future__ import annotations

from typing import Any

Rule = tuple[str, bool, str]  # (key of the section, whether its value is allowed, what it must be)


class ConfigError(ValueError):
    """A recipe or override that cannot be applied; the message names the key and its source."""


def at_least(obj: Any, minimum: int, keys: str) -> list[Rule]:
    """`key >= minimum` for each of the space-separated `keys` of `obj`."""
    return [(k, getattr(obj, k) >= minimum, f"must be >= {minimum}") for k in keys.split()]
