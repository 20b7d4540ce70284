"""The import-linter contracts of ``.importlinter``: ``lint-imports`` passes on the tree with both.

- twin-independent (issue 13): its forbidden list names every falkit module except the twin and the
  four it may use (so a new module cannot slip past it), and it catches a twin module that imports
  falkit's logic, directly, through an allowed module, or from a sub-module of a package (falkit.kube);
- kube-gateway (issue 18, one gateway per client): it catches a falkit module other than
  ``falkit.kube.*`` that imports the ``kubernetes`` client — at module level or inside a function,
  in a step or in the twin — while ``falkit.kube``'s own imports of it pass."""

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


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "falkit"
    shutil.copytree(ROOT / "falkit", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    return copy


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


def test_the_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 2 kept, 0 broken." in r.stdout


def test_the_contract_forbids_every_falkit_module_but_the_allowed_ones():
    modules = {m.name for m in pkgutil.iter_modules(falkit.__path__)}
    assert {f"falkit.{m}" for m in modules - ALLOWED} == _forbidden()


@pytest.mark.parametrize("line", ["from falkit.plan import lb_addresses\n",
                                  "from falkit import spec\nimport falkit.ownership\n",
                                  "from falkit.kube.crud import kget\n"])
def test_the_contract_catches_a_twin_module_that_imports_falkit_logic(tmp_path, line):
    copy = _copy(tmp_path)
    (copy / "twin" / "leak.py").write_text('"""A twin module that borrows falkit logic."""\n' + line)
    r = _lint(tmp_path, pythonpath=tmp_path)
    assert r.returncode == 1
    assert "falkit.twin.leak -> falkit." in r.stdout


@pytest.mark.parametrize(("where", "text"), [
    ("steps/leak.py", "from kubernetes import client\n"),
    ("leak.py", "def read(api):\n    from kubernetes.dynamic import DynamicClient\n\n    return DynamicClient(api)\n"),
    ("twin/leak.py", "import kubernetes.client\n"),
])
def test_the_gateway_contract_catches_a_module_outside_falkit_kube_that_imports_kubernetes(tmp_path, where, text):
    copy = _copy(tmp_path)
    (copy / where).write_text('"""A module that talks to Kubernetes past falkit.kube."""\n' + text)
    r = _lint(tmp_path, pythonpath=tmp_path)
    assert r.returncode == 1
    module = "falkit." + where.removesuffix(".py").replace("/", ".")
    assert "only falkit.kube imports the kubernetes client BROKEN" in r.stdout
    assert f"{module} -> kubernetes" in r.stdout
