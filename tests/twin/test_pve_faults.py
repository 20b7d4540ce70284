"""Faults injected through the control API, each observed through proxmoxer as PVE would show it.

Covers every fault kind (task_error, pve_error, lock, config_lock, offline_node, lost_quorum,
slow_task, start_error, http_error, storage_full), that DELETE /faults undoes them, the state dump,
and the snapshot/restore round trip.
"""

from __future__ import annotations

import json

import pytest
from proxmoxer import ResourceException
from pve_fixtures import fal_spec, start_pve, stop_pve, task_log, wait_task

from falkit.model.errors import TwinError
from falkit.twin.supervisor import pve_config_from_spec


def test_task_error_on_create(pve_empty):
    api, ctl = pve_empty.api(), pve_empty.control
    ctl.fault("task_error", match="qmcreate", vmid=201, message="unable to create VM 201 - injected", count=1)
    st = wait_task(api, "fal", api.nodes("fal").qemu.post(vmid=201, name="w", scsi0="helford:300"))
    assert st["exitstatus"] == "unable to create VM 201 - injected"
    assert api.nodes("fal").qemu.get() == []  # the half-made VM is gone, as on PVE
    # count=1: the next create succeeds.
    st = wait_task(api, "fal", api.nodes("fal").qemu.post(vmid=201, name="w", scsi0="helford:300"))
    assert st["exitstatus"] == "OK"


def test_task_error_matches_only_its_vmid(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("task_error", match="qm(stop|shutdown)", vmid=201, message="boom")
    assert wait_task(api, "fal", api.nodes("fal").qemu(200).status.stop.post())["exitstatus"] == "OK"
    upid = api.nodes("fal").qemu(201).status.stop.post()
    assert wait_task(api, "fal", upid)["exitstatus"] == "boom"
    assert task_log(api, "fal", upid)[-1] == "TASK ERROR: boom"
    assert ctl.clear() == 1
    assert wait_task(api, "fal", api.nodes("fal").qemu(201).status.stop.post())["exitstatus"] == "OK"


def test_pve_catalogue_error(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("pve_error", method="POST", path="/nodes/fal/qemu/201/status/shutdown",
              error="quit_powerdown_failed_got_timeout", count=1)
    upid = api.nodes("fal").qemu(201).status.shutdown.post()  # an in-task error: a UPID, then TASK ERROR
    assert wait_task(api, "fal", upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert api.nodes("fal").qemu(201).status.current.get()["status"] == "running"
    assert wait_task(api, "fal", api.nodes("fal").qemu(201).status.shutdown.post())["exitstatus"] == "OK"


def test_lock(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("lock", vmid=201, lock="backup")
    assert api.nodes("fal").qemu(201).config.get()["lock"] == "backup"
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").qemu(201).status.shutdown.post()
    assert "VM is locked (backup)" in str(exc.value)
    ctl.clear()
    assert "lock" not in api.nodes("fal").qemu(201).config.get()


def test_config_lock(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("config_lock", vmid=201)
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").qemu(201).config.put(description="x")
    assert "can't lock file '/var/lock/qemu-server/lock-201.conf' - got timeout" in str(exc.value)
    ctl.clear()
    api.nodes("fal").qemu(201).config.put(description="x")
    assert api.nodes("fal").qemu(201).config.get()["description"] == "x"


def test_offline_node(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("offline_node")
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").qemu.get()
    assert exc.value.status_code == 595
    assert api.nodes.get()[0]["status"] == "offline"
    ctl.clear()
    assert len(api.nodes("fal").qemu.get()) == 2


def test_lost_quorum(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("lost_quorum")
    assert len(api.nodes("fal").qemu.get()) == 2  # reads still work
    for write in (lambda: api.nodes("fal").qemu(201).config.put(description="x"),
                  lambda: api.nodes("fal").network.post(iface="vmbr1", type="bridge")):
        with pytest.raises(ResourceException) as exc:
            write()
        assert "cluster not ready - no quorum?" in str(exc.value)
    ctl.clear()
    api.nodes("fal").network.post(iface="vmbr1", type="bridge")


def test_slow_shutdown_times_out(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("slow_task", vmid=201, action="shutdown", secs=300)
    st = wait_task(api, "fal", api.nodes("fal").qemu(201).status.shutdown.post(timeout=60))
    assert st["exitstatus"] == "VM quit/powerdown failed - got timeout"
    ctl.clear()
    st = wait_task(api, "fal", api.nodes("fal").qemu(201).status.shutdown.post(timeout=60))
    assert st["exitstatus"] == "OK"


def test_start_error(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    wait_task(api, "fal", api.nodes("fal").qemu(200).status.stop.post())
    ctl.fault("start_error", vmid=200, message="start failed: QEMU exited with code 1")
    st = wait_task(api, "fal", api.nodes("fal").qemu(200).status.start.post())
    assert st["exitstatus"] == "start failed: QEMU exited with code 1"


def test_http_error_counts_down(pve_before):
    api, ctl = pve_before.api(), pve_before.control
    ctl.fault("http_error", status=503, count=2, path=r"/qemu$", message="Service Unavailable")
    for _ in range(2):
        with pytest.raises(ResourceException) as exc:
            api.nodes("fal").qemu.get()
        assert exc.value.status_code == 503
    assert api.nodes("fal").status.get()["cpuinfo"]["cpus"] == 16  # other paths unaffected
    assert len(api.nodes("fal").qemu.get()) == 2  # the third call passes


def test_storage_full(pve_empty):
    api, ctl = pve_empty.api(), pve_empty.control
    ctl.fault("storage_full", storage="helford")
    st = wait_task(api, "fal", api.nodes("fal").qemu.post(vmid=202, name="w", scsi0="helford:300"))
    assert "No space left on device" in st["exitstatus"]
    ctl.clear()
    assert wait_task(api, "fal", api.nodes("fal").qemu.post(vmid=202, name="w", scsi0="helford:300"))[
        "exitstatus"] == "OK"


def test_unknown_fault_is_refused(pve_empty):
    with pytest.raises(TwinError, match="unknown fault kind"):
        pve_empty.control.fault("meteor_strike")
    with pytest.raises(TwinError, match="no guest 999"):
        pve_empty.control.fault("lock", vmid=999)
    assert pve_empty.control.faults() == []


def test_snapshot_restore_round_trip(pve_empty, tmp_path):
    api = pve_empty.api()
    api.nodes("fal").network.post(iface="vmbr1", type="bridge", cidr="10.11.0.2/24", autostart=1)
    wait_task(api, "fal", api.nodes("fal").network.put())
    api.nodes("fal").network.post(iface="vmbr2", type="bridge")  # staged, not applied
    wait_task(api, "fal", api.nodes("fal").qemu.post(
        vmid=202, name="talos-worker-02", memory=9216, scsi0="local-lvm:30", scsi1="helford:300",
        net0="virtio=52:54:00:10:10:12,bridge=vmbr0", net1="virtio=52:54:00:10:11:12,bridge=vmbr1"))
    wait_task(api, "fal", api.nodes("fal").qemu(202).status.start.post())
    path = pve_empty.control.snapshot(str(pve_empty.state_dir / "snap.json"))
    assert json.loads(open(path).read())["format"] == "falkit-pve-snapshot/1"
    before = pve_empty.control.state()

    restored = start_pve(tmp_path / "restored", pve_config_from_spec(fal_spec(), "empty"), restore=path)
    try:
        api2 = restored.api()
        after = restored.control.state()
        for key in ("vms", "cts", "network", "storages"):
            assert after[key] == before[key], key
        cfg = api2.nodes("fal").qemu(202).config.get()
        assert cfg["net1"] == "virtio=52:54:00:10:11:12,bridge=vmbr1"
        assert api2.nodes("fal").qemu(202).status.current.get()["status"] == "running"
        ifaces = {i["iface"]: i for i in api2.nodes("fal").network.get()}
        assert ifaces["vmbr1"]["active"] == 1 and "active" not in ifaces["vmbr2"]
        helford = {s["storage"]: s for s in api2.nodes("fal").storage.get()}["helford"]
        assert helford["used"] == 300 * 1024 ** 3
        assert api2.nodes("fal").status.get()["memory"]["used"] == 9 * 1024 ** 3
    finally:
        stop_pve(restored.proc)
