"""Steps are found by name whatever was imported before (issue 18: ``get_step("rollback-metallb")``
raised ModuleNotFoundError in a fresh interpreter unless ``runbook.known_options()`` had run), and an
unknown name says which steps exist. Run in fresh interpreters: this process's registry is already full."""

from __future__ import annotations

import subprocess
import sys


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_rollback_step_is_found_in_a_fresh_interpreter():
    r = _fresh("from falkit.steps.base import get_step\nprint(type(get_step('rollback-metallb')).__name__, "
               "get_step('rollback-metallb').name)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "rollback-metallb"


def test_an_unknown_step_names_the_known_ones():
    r = _fresh("from falkit.steps.base import get_step\nget_step('rolback-metallb')")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "no step 'rolback-metallb'" in last and "rollback-metallb" in last and "vms" in last
