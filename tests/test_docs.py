"""The documentation keeps up with the code: every config key is explained (in its section's docstring, which
docs/configuration.md is generated from, and the page is current), the README's first screen is a first screen, and
every link in README.md and docs/ points at a file that exists."""

import importlib.util
import re

import pytest

from .conftest import REPO


def _config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", REPO / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_key_is_explained_in_its_section():
    docs = _config_docs()
    missing = {"/".join(names): docs.undocumented(cls) for names, cls, _ in docs.sections()}
    assert not {k: v for k, v in missing.items() if v}, "keys without an entry in their dataclass docstring"


def test_configuration_page_is_generated_from_the_current_code():
    page = REPO / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == _config_docs().page(), "run: python scripts/config_docs.py"


def test_readme_first_screen_fits_and_says_what_to_type():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 60
    assert any(line.startswith("make demo") for line in lines) and any(line.startswith("make test") for line in lines)


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_links_point_at_files_that_exist(path):
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
