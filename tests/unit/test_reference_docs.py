"""docs/QUICK_REFERENCE.md and docs/WINDOWS.md name only commands, settings, endpoints and
files that exist: each name they show is looked up in the code."""

from __future__ import annotations

import re

from payhook.app import create_app
from payhook.cli import main
from payhook.config import Settings
from tests.support.processes import REPO_ROOT

DOCS = REPO_ROOT / "docs"
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def _settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_quick_reference_commands_exist() -> None:
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    subcommands = set(re.findall(r"`payhook (\w+)", text))
    assert subcommands >= {"serve", "worker", "migrate", "send", "check", "replay", "purge"}
    assert subcommands <= set(main.commands)
    targets = set(re.findall(r"`make ([\w-]+)`", text))
    assert targets >= {"run", "test", "lint", "bench", "lock", "check-locks"}
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.MULTILINE), target


def test_quick_reference_variables_are_settings() -> None:
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    section = text.split("## Variables")[1].split("## Endpoints")[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE)
    named = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z_]+)`", cell)}
    assert len(named) >= 15
    assert named <= _settings_names()


def test_quick_reference_endpoints_exist() -> None:
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    section = text.split("## Endpoints")[1].split("## Status codes")[0]
    shown = set(re.findall(r"`(?:GET|POST) (/[^`?\[ ]*)", section))
    app = create_app(Settings(_env_file=None))
    paths = app.openapi()["paths"]
    documented = {path.replace("{id}", "{transaction_id}") for path in shown}
    assert len(documented) >= 8
    assert documented <= set(paths)


def test_windows_guide_installs_files_that_exist() -> None:
    text = (DOCS / "WINDOWS.md").read_text()
    files = set(re.findall(r"-r (requirements\\[\w.]+)", text))
    assert files == {"requirements\\prod.lock", "requirements\\uv.lock"}
    for name in files:
        assert (REPO_ROOT / name.replace("\\", "/")).is_file(), name
    assert set(re.findall(r"\$env:([A-Z_]+)", text)) <= _settings_names()
    assert set(re.findall(r"Scripts\\payhook (\w+)", text)) <= set(main.commands)
