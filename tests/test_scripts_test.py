"""``scripts/test``, the README's test command, run as a user runs it (bash, a copy of the script in a
scratch checkout) with stand-ins for the system commands it calls: ``id``, ``apt-get``, ``sudo`` and
the venv's ``pip``/``ruff``/``python``, each recording its arguments.

Covers: missing fio/chromium (and python3-venv where python3 has no ensurepip) are installed with ``apt-get update`` + ``apt-get install -y`` — directly
as root, through ``sudo -n`` otherwise; without root or password-less sudo the script stops before
anything else with the command to run; an apt-get failure stops it with a message; nothing is
installed when both are present; then the venv is created, falkit installed with its test extras,
ruff run, and pytest gets exactly the arguments given (``-k …``, a path); ``--system-only`` stops
after the system packages; ``.ci/run`` calls the same script. The real install was run once by hand
(see the report); the script's own run of pytest is exercised with a path argument there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

SCRIPT = ROOT / "scripts" / "test"

RECORD = '#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\n'


def _tool(path: Path, body: str) -> None:
    path.write_text(body)
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path):
    """A scratch checkout holding a copy of scripts/test, fake system commands and a fake venv."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / "test")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    calls.write_text("")
    _tool(bin_dir / "apt-get", RECORD.format(name="apt-get") + 'exit "${APT_RC:-0}"\n')
    _tool(bin_dir / "id", '#!/usr/bin/env bash\n[ "$1" = "-u" ] && echo "${FAKE_UID:-0}"\n')
    # sudo: -n true succeeds only with SUDO_OK=1; otherwise runs the command after -n
    _tool(bin_dir / "sudo", RECORD.format(name="sudo") +
          '[ "$1" = "-n" ] && shift\n[ "$1" = "true" ] && { [ "${SUDO_OK:-0}" = 1 ]; exit $?; }\nexec "$@"\n')
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    for name in ("pip", "ruff", "lint-imports", "python"):
        _tool(venv / name, RECORD.format(name=f".venv/{name}"))
    # "python3": the version check passes, "-m venv .venv" is recorded (the fake venv is already there)
    _tool(bin_dir / "python3", '#!/usr/bin/env bash\n[ "$1" = "-c" ] && [ -n "$NO_ENSUREPIP" ] && '
          '[[ "$2" == *ensurepip* ]] && exit 1\n'
          f'[ "$1" = "-c" ] && exec {sys.executable} "$@"\necho "python3 $*" >> "$CALLS"\n')
    chromium = tmp_path / "chromium"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "FALKIT_FIO": str(tmp_path / "no-fio"), "FALKIT_CHROMIUM": str(chromium), "PYTHON": str(bin_dir / "python3")}
    env.pop("SUDO_OK", None)
    return repo, env, calls, chromium


def _run(repo: Path, env: dict, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / "scripts" / "test"), *args], env={**env, **extra}, capture_output=True,
                          text=True, timeout=60)


def _calls(calls: Path) -> list[str]:
    return calls.read_text().splitlines()


def test_as_root_installs_missing_packages_then_venv_ruff_and_pytest_with_the_arguments(checkout):
    repo, env, calls, _ = checkout
    r = _run(repo, env, "-k", "charts and not slow", FAKE_UID="0")
    assert r.returncode == 0, r.stderr
    assert "installing fio chromium with apt-get" in r.stderr
    assert _calls(calls) == [
        "apt-get update -qq",
        "apt-get install -y -qq fio chromium",
        "python3 -m venv .venv",
        ".venv/pip install -q -e .[test]",
        ".venv/ruff check .",
        ".venv/lint-imports --no-cache",
        ".venv/python -m pytest -k charts and not slow",  # the arguments, passed through as given
    ]


def test_not_root_uses_sudo(checkout):
    repo, env, calls, _ = checkout
    r = _run(repo, env, "--system-only", FAKE_UID="1000", SUDO_OK="1")
    assert r.returncode == 0, r.stderr
    assert _calls(calls) == [
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio chromium",
        "apt-get install -y -qq fio chromium",
    ]  # --system-only: no venv, no pytest


def test_neither_root_nor_sudo_stops_with_the_command_to_run(checkout):
    repo, env, calls, _ = checkout
    r = _run(repo, env, "tests/test_reports.py", FAKE_UID="1000")
    assert r.returncode == 1
    assert "sudo apt-get install -y fio chromium" in r.stderr and "neither run apt-get" in r.stderr
    assert _calls(calls) == ["sudo -n true"]  # nothing installed, no venv, no pytest


def test_python_without_venv_support_gets_python3_venv(checkout):
    repo, env, calls, _ = checkout
    r = _run(repo, env, "--system-only", FAKE_UID="0", NO_ENSUREPIP="1")
    assert r.returncode == 0, r.stderr
    assert _calls(calls) == ["apt-get update -qq", "apt-get install -y -qq fio chromium python3-venv"]


def test_apt_failure_stops(checkout):
    repo, env, calls, _ = checkout
    r = _run(repo, env, FAKE_UID="0", APT_RC="100")
    assert r.returncode == 1 and "apt-get could not install fio chromium" in r.stderr
    assert _calls(calls) == ["apt-get update -qq"]


def test_nothing_to_install_when_present(checkout):
    repo, env, calls, chromium = checkout
    _tool(chromium, "#!/bin/sh\n")
    r = _run(repo, env, "tests/test_reports.py", FAKE_UID="1000", FALKIT_FIO="true")
    assert r.returncode == 0, r.stderr
    assert _calls(calls) == ["python3 -m venv .venv", ".venv/pip install -q -e .[test]", ".venv/ruff check .",
                             ".venv/lint-imports --no-cache", ".venv/python -m pytest tests/test_reports.py"]


def test_readme_and_ci_use_the_script():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    setup = readme.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = [b for b in blocks if b in setup]
    assert commands == ["python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/falkit run",
                        "scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    code = [ln for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")]
    assert code == ["set -euo pipefail", "cd \"$(dirname \"$0\")/..\"", "exec scripts/test \"$@\""]  # nothing else
    assert os.access(SCRIPT, os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)
