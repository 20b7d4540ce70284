"""A lost data disk (issue 15 item 2), through the runbook facade against the twin's Proxmox.

Covers:
- the twin as PVE: a disk detached from a running VM is hot-unplugged and listed as ``unused0``
  (its volume kept); a ``storage:size`` disk set on a running VM is allocated and hot-plugged at
  once (a real volume id with ``size=``, nothing pending); a volume spec that is neither
  ``storage:size`` nor an existing volume is refused in PVE's words, nothing allocated; deleting
  ``unusedN`` frees the volume; with ``hotplug=0`` a new disk stays pending;
- 20-vms re-attaches the detached volume (same volume id, 300G, ``unused0`` gone, no new volume on
  helford), converges without a reboot, and its checks pass; a re-run plans nothing;
- with no detached volume, 20-vms refuses to create an empty disk (blocked, nothing applied);
  ``new_empty_disk=True`` allocates one;
- a detached volume larger than planned is not re-attached silently (blocked, naming it);
- a disk value that names no volume (``helford:300`` left in a config) is not "converged";
- a change PVE leaves pending (``hotplug=0``) fails at once with the reason instead of waiting
  ``wait_timeout_s`` for a reboot that was never applied.
"""

from __future__ import annotations

import time

import pytest
from proxmoxer import ResourceException
from test_runbook_support import FAL

from falkit import runbook
from falkit.model.errors import RefusedError, StepError
from falkit.plan.payloads import Blocked
from falkit.steps.registry import get_step
from falkit.twin import supervisor

WORKER = 201  # talos-worker-01: scsi1 = the 300 GiB data disk on helford


@pytest.fixture(scope="module")
def lab_twin(tmp_path_factory):
    base = tmp_path_factory.mktemp("lost-disk")
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
    try:
        yield base, conn
    finally:
        supervisor.down(base / "twin")


@pytest.fixture(scope="module")
def migrated(lab_twin):
    """10-network and 20-vms applied once: the four VMs running as planned."""
    base, _conn = lab_twin
    mp = pytest.MonkeyPatch()
    mp.setenv("FALKIT_STATE_DIR", str(base))
    mp.setenv("FALKIT_HEADLESS", "1")
    mp.delenv("FALKIT_RUN_DIR", raising=False)
    try:
        lab = runbook.open(FAL, apply=True, notebook="setup", allow_disruptive=True)
        lab.step("network").apply()
        lab.step("vms").apply()
        assert all(c.ok for c in lab.checks("vms"))
        yield base
    finally:
        mp.undo()


def _open(**options):
    return runbook.open(FAL, apply=True, notebook="20-vms", **options)


def _qemu(lab, vmid=WORKER):
    return lab.target.pve.nodes(lab.target.node).qemu(vmid)


def _config(lab, vmid=WORKER):
    return {k: v for k, v in _qemu(lab, vmid).config.get().items() if k != "digest"}


def _pending(lab, vmid=WORKER):
    return {i["key"]: i for i in _qemu(lab, vmid).pending.get() if "pending" in i or i.get("delete")}


def _helford(lab):
    return {i["volid"]: i for i in lab.target.pve.nodes(lab.target.node).storage("helford").content.get(content="images")}


def _volume(value: str) -> str:
    return value.split(",", 1)[0]


def _restore_disk(lab, volid):
    """Put the original data disk back (for the next test), by hand as an operator would."""
    cfg = _config(lab)
    if _volume(cfg.get("scsi1", "")) != volid:
        _qemu(lab).config.put(scsi1=f"{volid},discard=on,iothread=1,ssd=1")
    for k, v in _config(lab).items():
        if k.startswith("unused") and v != volid:
            _qemu(lab).config.put(delete=k)


def test_detached_data_disk_is_reattached_not_replaced(migrated):
    lab = _open()
    before = _config(lab)
    volid = _volume(before["scsi1"])
    assert volid.startswith(f"helford:vm-{WORKER}-disk-") and "size=300G" in before["scsi1"]
    vols_before = _helford(lab)

    # The operator detaches the data disk of the running worker (GUI "Detach", `qm set 201 --delete scsi1`).
    _qemu(lab).config.put(delete="scsi1")
    cfg = _config(lab)
    assert "scsi1" not in cfg and cfg["unused0"] == volid and not _pending(lab)  # hot-unplugged, volume kept
    assert set(_helford(lab)) == set(vols_before)

    s = lab.step("vms")
    reattach = [c for c in s.plan.changes if c.field == "scsi1"]
    assert [(c.op, c.new) for c in reattach] == [("update", volid)] and "unused0" in reattach[0].reason
    assert not any(c.field == "reboot" for c in s.plan.changes)  # PVE hot-plugs a scsi disk
    t0 = time.monotonic()
    s.apply()
    assert s.converged and time.monotonic() - t0 < 30
    cfg = _config(lab)
    assert _volume(cfg["scsi1"]) == volid and "size=300G" in cfg["scsi1"]
    assert not any(k.startswith("unused") for k in cfg) and not _pending(lab)
    vols = _helford(lab)
    assert set(vols) == set(vols_before) and vols[volid]["size"] == 300 * 1024 ** 3  # the same volume, no new one
    assert all(c.ok for c in lab.checks("vms"))
    assert lab.step("vms").plan.empty  # a re-run changes nothing


def test_no_detached_volume_is_refused_then_new_empty_disk_allocates(migrated):
    lab = _open()
    volid = _volume(_config(lab)["scsi1"])
    _qemu(lab).config.put(delete="scsi1")
    _qemu(lab).config.put(delete="unused0")  # the operator also removed the volume: data gone
    assert volid not in _helford(lab)
    vols_before = set(_helford(lab))

    s = lab.step("vms")
    blocked = [c for c in s.plan.changes if c.field == "scsi1"]
    assert len(blocked) == 1 and isinstance(blocked[0].data, Blocked) and "a new disk would be empty" in blocked[0].reason
    with pytest.raises(RefusedError, match="new_empty_disk"):
        s.apply()
    assert "scsi1" not in _config(lab) and set(_helford(lab)) == vols_before  # nothing allocated
    check = next(c for c in get_step("vms").checks(lab.target, lab.spec, lab.step_options) if str(WORKER) in c.subject)
    assert not check.ok and "drift: scsi1" in check.observed and "new_empty_disk" in check.fix

    lab = _open(new_empty_disk=True)
    s = lab.step("vms")
    s.apply()
    assert s.converged
    cfg = _config(lab)
    new = _volume(cfg["scsi1"])
    assert new.startswith(f"helford:vm-{WORKER}-disk-") and "size=300G" in cfg["scsi1"] and not _pending(lab)
    assert set(_helford(lab)) == vols_before | {new} and _helford(lab)[new]["size"] == 300 * 1024 ** 3


def test_twin_refuses_what_pve_refuses(migrated):
    lab = _open()
    vols_before = set(_helford(lab))
    with pytest.raises(ResourceException) as exc:
        _qemu(lab).config.put(scsi5="helford:300G")
    assert "unable to parse lvm volume name '300G'" in str(exc.value)
    with pytest.raises(ResourceException) as exc:
        _qemu(lab).config.put(scsi5=f"helford:vm-{WORKER}-disk-77")
    assert f"volume helford:vm-{WORKER}-disk-77 does not exist" in str(exc.value)
    assert "scsi5" not in _config(lab) and not _pending(lab) and set(_helford(lab)) == vols_before


def test_unallocated_value_is_not_converged(migrated):
    """A config line ``scsi1: helford:300`` (what the old twin left; PVE never writes one) names no
    volume: the plan blocks it and says how to clear it, instead of reporting the VM converged."""
    from falkit.clients.proxmox import list_vms
    from falkit.steps.base import StepOptions
    from falkit.steps.vms import VmFacts, plan_vms

    lab = _open()
    vms = list_vms(lab.target.pve, lab.target.node)
    st = vms[WORKER]
    bad = type(st)(st.vmid, st.name, st.status, {**st.config, "scsi1": "helford:300,discard=on,iothread=1,ssd=1"}, {})
    plan = plan_vms(lab.spec, VmFacts(lab.target.node, {**vms, WORKER: bad}), StepOptions())
    c = next(c for c in plan.changes if c.field == "scsi1")
    assert isinstance(c.data, Blocked) and "a size to allocate, not a volume" in c.reason and "--delete scsi1" in c.data.fix


def test_disk_left_pending_fails_at_once_instead_of_waiting(migrated):
    """The plan expects the re-attach hot-plugged; the VM restarted with disk hot-plug off before
    apply, so PVE keeps it pending: the step fails at once, naming it, instead of waiting
    ``wait_timeout_s`` for a reboot it never applies."""
    from falkit.clients.proxmox import wait_task

    lab = _open(wait_timeout_s=120)
    volid = _volume(_config(lab)["scsi1"])
    _qemu(lab).config.put(delete="scsi1")
    s = lab.step("vms")
    assert [c.new for c in s.plan.changes if c.field == "scsi1"] == [volid]
    assert not any(c.field == "reboot" for c in s.plan.changes)
    _qemu(lab).config.put(hotplug="network,usb")
    assert "hotplug" in _pending(lab)  # not a fast-plug option: in effect after the next start
    wait_task(lab.target.pve, lab.target.node, _qemu(lab).status.reboot.post(), timeout=60)
    assert _config(lab)["hotplug"] == "network,usb"
    try:
        t0 = time.monotonic()
        with pytest.raises(StepError, match=r"left change\(s\) pending") as exc:
            s.apply()
        assert time.monotonic() - t0 < 30 and "allow_disruptive" in exc.value.resume
        assert _volume(_pending(lab)["scsi1"]["pending"]) == volid  # PVE's state: attached at the next start
        assert not any(k.startswith("unused") for k in _config(lab))
        # The planner now sees the pending disk and plans the restart (disruptive).
        lab = _open(allow_disruptive=True)
        s = lab.step("vms")
        assert [c.field for c in s.plan.changes if c.name == "talos-worker-01"] == ["reboot"]
        _qemu(lab).config.put(hotplug="1")
        lab = _open(allow_disruptive=True)
        lab.step("vms").apply()
        cfg = _config(lab)
        assert _volume(cfg["scsi1"]) == volid and "size=300G" in cfg["scsi1"] and not _pending(lab)
    finally:
        if _config(lab).get("hotplug", "1") != "1":
            _qemu(lab).config.put(hotplug="1")


def test_detached_volume_larger_than_planned_is_not_reattached_silently(migrated):
    """The only detached volume is larger than the plan (PVE cannot shrink): blocked, naming it,
    instead of re-attaching it and then waiting on a shrink that is refused."""
    lab = _open()
    _qemu(lab).config.put(delete="scsi1")
    _qemu(lab).config.put(delete="unused0")  # frees the 300 GiB volume: room for a larger one
    _qemu(lab).config.put(scsi5="helford:310")
    big = _volume(_config(lab)["scsi5"])
    assert "size=310G" in _config(lab)["scsi5"] and not _pending(lab)  # hot-plugged at once
    _qemu(lab).config.put(delete="scsi5")
    assert _config(lab)["unused0"] == big
    s = lab.step("vms")
    c = next(c for c in s.plan.changes if c.field == "scsi1")
    assert isinstance(c.data, Blocked) and "larger than the planned 300G" in c.reason and big in c.data.fix
    with pytest.raises(RefusedError):
        s.apply()
    cfg = _config(lab)
    assert "scsi1" not in cfg and cfg["unused0"] == big and big in _helford(lab)
