"""The storage network's state in the twin's ping model (issue 15 items 1 and 4), against a real
twin Proxmox process: a worker whose net1 has ``link_down=1`` cannot reach (or be reached on) the
storage network; with vmbr1 gone from the host no ping over it succeeds; the lab fault
``storage_link_down`` (``POST /lab/faults``) cuts one worker's storage NIC and ``DELETE /lab/faults``
restores it; a VM rebooted with a NIC on a bridge that does not exist stays stopped with PVE's
``bridge 'vmbr1' does not exist``.
"""

from __future__ import annotations

import json

from pve_fixtures import task_log, wait_task
from test_lab_controllers_storage import WORKERS, create_job, job_done, make_ctx, pve, run  # noqa: F401 - fixture
from test_pve_network import VMBR1

from falkit.twin.lab import faults, jobs, workloads

TARGETS = ["10.11.0.11", "10.11.0.12", "10.11.0.13", "10.10.0.12"]


def ping(twin, ctx, name, node):
    create_job(twin, jobs.job_manifest("ping", name, "default", node=node, targets=TARGETS))
    run(twin, workloads.reconcile(ctx))
    return [r["reachable"] for r in json.loads(job_done(twin, name))["results"]]


def test_link_down_and_the_lab_fault_cut_the_storage_network(twin, pve, tmp_path):  # noqa: F811 - fixture
    ctx = make_ctx(twin, pve, tmp_path)
    ctx.bootstrapped = True  # the emulator serves (clearing faults keeps the API up)
    assert ping(twin, ctx, "p0", WORKERS[0]) == [True, True, True, True]
    faults.inject(ctx, {"kind": "storage_link_down", "node": WORKERS[1]})
    assert ping(twin, ctx, "p1", WORKERS[0]) == [True, False, True, True]  # management still fine
    assert ping(twin, ctx, "p2", WORKERS[1]) == [False, False, False, True]
    assert faults.clear(ctx) >= 1 and not ctx.faults.storage_link_down
    api = pve.api()
    net1 = api.nodes("fal").qemu(203).config.get()["net1"]

    def set_net1(value):  # stopped, changed, started: the NIC comes up with the new config
        wait_task(api, "fal", api.nodes("fal").qemu(203).status.stop.post())
        api.nodes("fal").qemu(203).config.put(net1=value)
        wait_task(api, "fal", api.nodes("fal").qemu(203).status.start.post())
        ctx.pve.invalidate()
    try:
        set_net1(net1 + ",link_down=1")
        # worker-03's management NIC (10.10.0.13 is not a target) is untouched; its storage NIC is cut
        assert ping(twin, ctx, "p3", WORKERS[0]) == [True, True, False, True]
    finally:
        set_net1(net1)
    assert ping(twin, ctx, "p4", WORKERS[0]) == [True, True, True, True]


def test_storage_ping_fails_without_the_bridge_on_the_host(twin, pve_empty, tmp_path):
    api = pve_empty.api()
    for i in range(3):
        wait_task(api, "fal", api.nodes("fal").qemu.post(
            vmid=201 + i, name=WORKERS[i], memory=9216, scsi0="local-lvm:30",
            net0=f"virtio=52:54:00:10:10:{11 + i},bridge=vmbr0", net1=f"virtio=52:54:00:10:11:{11 + i},bridge=vmbr1"))
    api.nodes("fal").network.post(**VMBR1)
    wait_task(api, "fal", api.nodes("fal").network.put())
    for i in range(3):
        wait_task(api, "fal", api.nodes("fal").qemu(201 + i).status.start.post())
    ctx = make_ctx(twin, pve_empty, tmp_path)
    assert ping(twin, ctx, "b0", WORKERS[0]) == [True, True, True, True]
    api.nodes("fal").network("vmbr1").delete()
    wait_task(api, "fal", api.nodes("fal").network.put())
    ctx.pve.invalidate()
    assert ping(twin, ctx, "b1", WORKERS[0]) == [False, False, False, True]
    # a reboot now starts a fresh QEMU whose tap has no bridge: it fails and the VM stays stopped
    upid = api.nodes("fal").qemu(202).status.reboot.post()
    st = wait_task(api, "fal", upid)
    assert st["exitstatus"] == "start failed: QEMU exited with code 1"
    assert "bridge 'vmbr1' does not exist" in task_log(api, "fal", upid)
    assert api.nodes("fal").qemu(202).status.current.get()["status"] == "stopped"
