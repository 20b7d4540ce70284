"""Support for the gate tests (no tests here): a private twin per test module, and the runbook
facade driven in JupyterLab mode (``FALKIT_INTERACTIVE=1``) or headless (``FALKIT_HEADLESS=1``)
from the same test process — the two ways a notebook runs.

- ``gate_twin`` (module scope): the twin in its "before" state under a temp ``FALKIT_STATE_DIR``,
  run directories under a temp ``FALKIT_OUTPUTS``; yields ``(base, connection)``.
- :func:`interactive` / :func:`headless`: ``runbook.open`` in that mode (the mode is read when the lab
  opens; each lab gets its own ``FALKIT_RUN_DIR`` unless one is given).
- :func:`click`: press a gate's Apply (and Confirm when it asks), as an operator does.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from test_runbook_support import FAL

from falkit import runbook


@pytest.fixture(scope="module")
def gate_twin(tmp_path_factory):
    from falkit.twin import supervisor

    base = tmp_path_factory.mktemp("gates-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FALKIT_STATE_DIR", str(base))
        mp.setenv("FALKIT_OUTPUTS", str(base / "outputs"))
        mp.delenv("FALKIT_RUN_DIR", raising=False)
        mp.delenv("FALKIT_HEADLESS", raising=False)
        mp.delenv("FALKIT_INTERACTIVE", raising=False)
        conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
        try:
            yield base, conn
        finally:
            supervisor.down(base / "twin")


@contextlib.contextmanager
def mode(var: str, run_dir: str | os.PathLike | None = None):
    keys = ("FALKIT_INTERACTIVE", "FALKIT_HEADLESS", "FALKIT_RUN_DIR")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.pop(k, None)
    os.environ[var] = "1"
    if run_dir is not None:
        os.environ["FALKIT_RUN_DIR"] = str(run_dir)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interactive(notebook: str, run_dir=None, apply: bool = False, **options) -> runbook.Lab:
    """A lab as a JupyterLab kernel opens it (FALKIT_RUN_DIR as given, else a new outputs/…-lab)."""
    with mode("FALKIT_INTERACTIVE", run_dir):
        lab = runbook.open(FAL, target="twin", apply=apply, notebook=notebook, **options)
        lab.interactive = True  # what FALKIT_INTERACTIVE gave it (set as older tests do, too)
        lab._run_dir_env = os.environ.get("FALKIT_RUN_DIR")
    return lab


def headless(notebook: str, run_dir=None, apply: bool = True, **options) -> runbook.Lab:
    """A lab as a papermill kernel of ``falkit run`` opens it."""
    with mode("FALKIT_HEADLESS", run_dir):
        return runbook.open(FAL, target="twin", apply=apply, notebook=notebook, **options)


@contextlib.contextmanager
def kernel(lab: runbook.Lab):
    """The environment of ``lab``'s kernel while it runs a cell or a gate callback."""
    with mode("FALKIT_INTERACTIVE", getattr(lab, "_run_dir_env", None)):
        yield


def click(run) -> None:
    """Apply (and Confirm for disruptive/destructive changes) on ``run``'s gate; raises what it shows."""
    gate = run.gate
    assert gate is not None, f"{run.name}: no gate"
    with kernel(run.lab):
        gate.apply_button.click()
        if gate.state == "confirming":
            gate.confirm_button.click()
    if gate.error is not None:
        raise AssertionError(f"{run.name}: the gate failed: {gate.error}")


def rows(plan) -> list[dict]:
    return [c.row() for c in plan.changes]
