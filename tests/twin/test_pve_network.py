"""The twin's /nodes/{node}/network is stateful as PVE's (pve-manager PVE/API2/Network.pm).

Covers: POST stages a bridge (listed without active/exists, with a top-level `changes` diff), a
duplicate iface and a second default gateway are 400s in PVE's wording, PUT applies (a srvreload
task) and the bridge becomes active, DELETE reverts staged changes, per-iface GET/PUT/DELETE, and a
VM whose NIC names a bridge that is not active fails to start with PVE's TASK ERROR.
"""

from __future__ import annotations

import pytest
from proxmoxer import ResourceException
from pve_fixtures import task_log, wait_task

VMBR1 = dict(iface="vmbr1", type="bridge", bridge_ports="", cidr="10.11.0.2/24", autostart=1,
             comments="storage network")


def _ifaces(api):
    return {i["iface"]: i for i in api.nodes("fal").network.get()}


def test_create_stage_apply_bridge(pve_empty):
    api = pve_empty.api()
    assert set(_ifaces(api)) == {"enp1s0", "vmbr0"}
    api.nodes("fal").network.post(**VMBR1)
    staged = _ifaces(api)["vmbr1"]
    assert staged["type"] == "bridge" and staged["cidr"] == "10.11.0.2/24"
    assert "active" not in staged and "exists" not in staged
    assert _ifaces(api)["vmbr0"]["active"] == 1
    body = pve_empty.raw("GET", "/nodes/fal/network").json()
    assert "+iface vmbr1 inet static" in body["changes"]
    assert "interfaces.new" in body["changes"]
    # Applying: PUT reloads the network in a task, then vmbr1 is active and nothing is pending.
    upid = api.nodes("fal").network.put()
    assert ":srvreload:networking:" in upid
    assert wait_task(api, "fal", upid)["exitstatus"] == "OK"
    live = _ifaces(api)["vmbr1"]
    assert (live["active"], live["exists"], live["comments"]) == (1, 1, "storage network")
    assert "changes" not in pve_empty.raw("GET", "/nodes/fal/network").json()
    assert pve_empty.control.state()["network"]["active"]["vmbr1"]["cidr"] == "10.11.0.2/24"


def test_duplicate_iface_is_rejected_with_pve_wording(pve_empty):
    api = pve_empty.api()
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").network.post(iface="vmbr0", type="bridge", bridge_ports="enp1s0")
    assert exc.value.status_code == 400
    assert exc.value.errors == {"iface": "interface already exists"}
    api.nodes("fal").network.post(**VMBR1)
    with pytest.raises(ResourceException) as exc:  # a staged iface counts too
        api.nodes("fal").network.post(**VMBR1)
    assert exc.value.errors == {"iface": "interface already exists"}


def test_second_default_gateway_is_rejected(pve_empty):
    """The seed gives vmbr1 a gateway (10.11.0.1); PVE allows one default gateway per host."""
    api = pve_empty.api()
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").network.post(**dict(VMBR1, gateway="10.11.0.1"))
    assert exc.value.status_code == 400
    assert exc.value.errors == {"gateway": "Default gateway already exists on interface 'vmbr0'."}
    assert "vmbr1" not in _ifaces(api)


def test_revert_drops_staged_changes(pve_empty):
    api = pve_empty.api()
    api.nodes("fal").network.post(**VMBR1)
    api.nodes("fal").network("vmbr0").delete()
    assert set(_ifaces(api)) == {"enp1s0", "vmbr1"}
    api.nodes("fal").network.delete()
    assert set(_ifaces(api)) == {"enp1s0", "vmbr0"}
    assert pve_empty.control.state()["network"]["staged"] is None


def test_iface_read_update_delete(pve_empty):
    api = pve_empty.api()
    assert api.nodes("fal").network("vmbr0").get()["gateway"] == "10.30.0.1"
    with pytest.raises(ResourceException) as exc:
        api.nodes("fal").network("vmbr9").get()
    assert exc.value.errors == {"iface": "interface does not exist"}
    api.nodes("fal").network("vmbr0").put(type="bridge", cidr="10.10.0.2/24", gateway="10.10.0.1",
                                          bridge_ports="enp1s0")
    assert api.nodes("fal").network("vmbr0").get()["cidr"] == "10.10.0.2/24"
    assert pve_empty.control.state()["network"]["active"]["vmbr0"]["cidr"] == "10.30.0.2/24"
    wait_task(api, "fal", api.nodes("fal").network.put())
    assert pve_empty.control.state()["network"]["active"]["vmbr0"]["cidr"] == "10.10.0.2/24"


def test_vm_start_fails_while_its_bridge_is_not_active(pve_empty):
    api = pve_empty.api()
    wait_task(api, "fal", api.nodes("fal").qemu.post(
        vmid=202, name="talos-worker-02", memory=9216, scsi0="local-lvm:30",
        net0="virtio=52:54:00:10:10:12,bridge=vmbr0", net1="virtio=52:54:00:10:11:12,bridge=vmbr1"))
    api.nodes("fal").network.post(**VMBR1)  # staged only: not yet a bridge on the host
    upid = api.nodes("fal").qemu(202).status.start.post()
    st = wait_task(api, "fal", upid)
    assert st["exitstatus"] == "start failed: QEMU exited with code 1"
    log = task_log(api, "fal", upid)
    assert "bridge 'vmbr1' does not exist" in log
    assert log[-1] == "TASK ERROR: start failed: QEMU exited with code 1"
    assert api.nodes("fal").qemu(202).status.current.get()["status"] == "stopped"
    wait_task(api, "fal", api.nodes("fal").network.put())
    upid = api.nodes("fal").qemu(202).status.start.post()
    assert wait_task(api, "fal", upid)["exitstatus"] == "OK"
    assert api.nodes("fal").qemu(202).status.current.get()["status"] == "running"
