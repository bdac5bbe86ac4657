"""requirements.lock covers what pyproject.toml asks for: a dependency added to pyproject (an extra's new package)
without `make lock` left the lock without it, and a fresh `make test` then resolved it against pins made without it
(CI: pip's ResolutionImpossible, trackio asking for pillow<13 against the lock's pillow 13)."""

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_norm(name)] = Version(version)
    return pins


def test_every_dependency_and_extra_is_pinned_in_the_lock_within_its_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = _lock()
    missing = sorted({r.name for r in wanted if _norm(r.name) not in pins})
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    outside = sorted(f"{r} (locked {pins[_norm(r.name)]})" for r in wanted
                     if not r.specifier.contains(pins[_norm(r.name)], prereleases=True))  # fmt: skip
    assert not outside, f"requirements.lock pins outside pyproject's bounds (run `make lock`): {outside}"
