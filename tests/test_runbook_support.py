"""Support for the runbook/runner/target tests (no tests here): a session twin and test steps.

- ``twin_session``: the twin (pve process + lab process) started through ``falkit.twin.supervisor``
  with its state in a session temp dir; yields ``(state_base, connection)`` and stops it at the end.
- ``DescriptionStep`` (step ``t-desc``): plans one VM's description to ``value-<t_value>`` (a
  setting PVE applies at once, even to a running VM — memory would go to pending); ``t_disruptive``/``t_destructive`` flag the change, ``t_fail_apply`` makes apply
  raise, ``t_skip_apply`` makes it do nothing (never converges). Real proxmoxer calls against the twin; notebooks import this module to use it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from falkit.plan.diff import Change, Noop, Plan
from falkit.steps.base import Check, register
from falkit.steps.registry import add

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FAL = ROOT / "parameters" / "fal.yaml"


@add
@register("t-desc")
class DescriptionStep:
    title = "test: one VM's description"
    options = {"t_value": (int, 0), "t_vmid": (int, 200), "t_disruptive": (bool, False),
               "t_destructive": (bool, False), "t_fail_apply": (bool, False), "t_skip_apply": (bool, False)}

    def observe(self, target, spec, options):
        vmid = options.extra.get("t_vmid", 200)
        return value_of(target, vmid)

    def plan(self, spec, observed, options):
        vmid = options.extra.get("t_vmid", 200)
        want = options.extra.get("t_value", 0)
        if observed == want:
            return Plan("t-desc", noops=(Noop("vm-config", str(vmid), f"description is value-{want}"),))
        return Plan("t-desc", (Change("update", "vm-config", str(vmid), "description", observed, want,
                                        disruptive=options.extra.get("t_disruptive", False),
                                        destructive=options.extra.get("t_destructive", False)),))

    def apply(self, target, plan, options, progress):
        if options.extra.get("t_fail_apply"):
            raise RuntimeError("planted failure in t-desc apply")
        if options.extra.get("t_skip_apply"):
            return
        for c in plan.changes:
            update = progress.task(f"description of {c.name}", total=2)
            update(1, "setting")
            target.pve.nodes(target.node).qemu(int(c.name)).config.post(description=f"value-{c.new}")
            update(2, "done")

    def checks(self, target, spec, options):
        vmid = options.extra.get("t_vmid", 200)
        want = options.extra.get("t_value", 0)
        got = value_of(target, vmid)
        return [Check("description", str(vmid), f"value-{want}", f"value-{got}", got == want, "re-run the step")]


def value_of(target, vmid: int) -> int:
    """The N of a VM's description ``value-N`` (-1 when it has another description)."""
    desc = target.pve.nodes(target.node).qemu(vmid).config.get().get("description", "")
    return int(desc[6:]) if desc.startswith("value-") and desc[6:].lstrip("-").isdigit() else -1


def set_value(target, n: int, vmid: int = 200) -> None:
    target.pve.nodes(target.node).qemu(vmid).config.post(description=f"value-{n}")


@pytest.fixture(scope="session")
def twin_session(tmp_path_factory):
    """The whole twin, started through the supervisor in a session state dir."""
    from falkit.twin import supervisor

    base = tmp_path_factory.mktemp("falkit-state")
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
    try:
        yield base, conn
    finally:
        supervisor.down(base / "twin")


@pytest.fixture
def state_env(twin_session, monkeypatch):
    """FALKIT_STATE_DIR pointing at the session twin; FALKIT_RUN_DIR unset."""
    base, conn = twin_session
    monkeypatch.setenv("FALKIT_STATE_DIR", str(base))
    monkeypatch.delenv("FALKIT_RUN_DIR", raising=False)
    monkeypatch.setenv("FALKIT_HEADLESS", "1")
    return base, conn

