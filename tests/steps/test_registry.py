"""Steps are found by name whatever was imported before (issue 18: ``get_step("rollback-metallb")``
raised ModuleNotFoundError in a fresh interpreter unless ``runbook.known_options()`` had run): the
steps are listed explicitly in ``falkit.steps.registry``, every one of falkit's step classes is in
that list, a test step is added without replacing one of falkit's, and an unknown name says which
steps exist. The lookups run in fresh interpreters: nothing imported before may help."""

from __future__ import annotations

import subprocess
import sys


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_rollback_step_is_found_in_a_fresh_interpreter():
    r = _fresh("from falkit.steps.registry import get_step\nprint(type(get_step('rollback-metallb')).__name__, "
               "get_step('rollback-metallb').name)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "rollback-metallb"


def test_an_unknown_step_names_the_known_ones():
    r = _fresh("from falkit.steps.registry import get_step\nget_step('rolback-metallb')")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "no step 'rolback-metallb'" in last and "rollback-metallb" in last and "vms" in last


def test_every_step_class_of_falkit_is_listed():
    """A step class written in falkit/steps but left out of STEPS would never run: every class named
    with ``@register`` in a step module is in the explicit list (and each name once)."""
    r = _fresh("import inspect, pkgutil, importlib, falkit.steps as pkg\n"
               "from falkit.steps.registry import STEPS\n"
               "names = [m.name for m in pkgutil.walk_packages(pkg.__path__, 'falkit.steps.')]\n"
               "found = {c for n in names for _k, c in inspect.getmembers(importlib.import_module(n), inspect.isclass)\n"
               "         if isinstance(c.__dict__.get('name'), str) and c.__module__.startswith('falkit.steps')}\n"
               "print(sorted(c.name for c in found - set(STEPS)), len(STEPS) == len({s.name for s in STEPS}))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("]")[-1].strip() == "True" and r.stdout.startswith("[]"), r.stdout


def test_an_added_step_is_found_and_cannot_replace_falkits():
    r = _fresh("from falkit.steps.base import register\nfrom falkit.steps.registry import add, get_step\n"
               "@add\n@register('t-extra')\nclass T: pass\n"
               "print(type(get_step('t-extra')).__name__)\n"
               "try:\n    add(register('vms')(type('V', (), {})))\nexcept ValueError as e:\n    print('refused:', e)\n"
               "print(type(get_step('vms')).__name__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["T", "refused: step 'vms' is one of falkit's own steps", "VmsStep"]
