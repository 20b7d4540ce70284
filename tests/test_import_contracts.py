"""The import-linter contract that keeps the twin independent of falkit's logic (issue 13):
``lint-imports`` with the repository's ``.importlinter`` passes on the tree; the contract's
forbidden list names every falkit module except the twin and the four it may use (so a new module
cannot slip past it); and the contract does catch a twin module that imports falkit's logic,
directly or through an allowed module."""

from __future__ import annotations

import configparser
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import falkit

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
ALLOWED = {"twin", "spec", "errors", "schemas", "yamlsrc"}


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(CONFIG)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _forbidden() -> set[str]:
    cp = configparser.ConfigParser()
    cp.read(CONFIG, encoding="utf-8")
    return set(cp["importlinter:contract:twin-independent"]["forbidden_modules"].split())


def test_the_twin_independence_contract_holds():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 1 kept, 0 broken." in r.stdout


def test_the_contract_forbids_every_falkit_module_but_the_allowed_ones():
    modules = {m.name for m in pkgutil.iter_modules(falkit.__path__)}
    assert {f"falkit.{m}" for m in modules - ALLOWED} == _forbidden()


@pytest.mark.parametrize("line", ["from falkit.design import lb_addresses\n",
                                  "from falkit import spec\nimport falkit.ownership\n"])
def test_the_contract_catches_a_twin_module_that_imports_falkit_logic(tmp_path, line):
    copy = tmp_path / "falkit"
    shutil.copytree(ROOT / "falkit", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (copy / "twin" / "leak.py").write_text('"""A twin module that borrows falkit logic."""\n' + line)
    r = _lint(tmp_path, pythonpath=tmp_path)
    assert r.returncode == 1
    assert "falkit.twin.leak -> falkit." in r.stdout
