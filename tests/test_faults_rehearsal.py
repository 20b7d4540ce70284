"""Fault rehearsals on the twin: a fault in a step stops ``falkit run`` there with a clear message;
``falkit run --resume`` completes the run once the fault is cleared; nothing is duplicated or lost.

Faults (the twin's own controls, never a patched client): a Proxmox task error while creating a
worker VM (``PveControl`` ``task_error`` on ``qmcreate``), a locked VM (``lock`` ``backup`` on VMID
201, whose MACs the migration changes), a Kubernetes API 5xx burst and a node going NotReady
(``LabClient`` ``kube_http_error`` / ``node_not_ready``) during 50-mayastor, a DiskPool going
Degraded (``diskpool_degraded``) before 70-validation, a worker's storage NIC losing its link
(``storage_link_down``: its storage-network pings fail and 70-validation names the worker). Each stops the run at that notebook, and the
message names the notebook, the cell, the cause and the resume command. After ``--resume``: four
cluster VMs (no duplicate), one PVC per Longhorn claim and one Mayastor copy each (no duplicate),
one Helm release per chart, and every volume's data checksum as before the migration.
``time_factor`` 0; ``wait_timeout_s`` short so a fault that only waits fails fast.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from test_rehearsal import falkit_run, lab  # noqa: F401 - the twin fixture

from falkit.steps.rollback import lab_state, record_before_state
from falkit.twin.lab.client import LabClient
from falkit.twin.pvecontrol import PveControl

FAST = ("--set", "wait_timeout_s=20")


def _inject(lab, where: str, kind: str, **fields) -> None:  # noqa: F811
    conn = lab["target"].connection
    if where == "pve":
        PveControl(conn).fault(kind, **fields)
    else:
        LabClient(conn).fault(kind, **fields)


def _clear(lab, where: str) -> None:  # noqa: F811
    conn = lab["target"].connection
    if where == "pve":
        PveControl(conn).clear()
    else:
        LabClient(conn).clear_faults()


FAULTS = {
    # name: (notebooks run first, where, kind, fields, the notebook that must stop, words of the cause)
    "pve task error creating a VM": ([], "pve", "task_error", {"match": "qmcreate", "vmid": 202,
                                                               "message": "unable to create VM 202 - rehearsal"},
                                     "20-vms", "rehearsal"),
    "locked VM": ([], "pve", "lock", {"vmid": 201, "lock": "backup"}, "20-vms", "locked"),
    "kube API 5xx burst": (["00", "10", "20", "30", "40", "45"], "lab", "kube_http_error", {"status": 503, "count": 500},
                           "50-mayastor", "503"),
    "node NotReady": (["00", "10", "20", "30", "40", "45"], "lab", "node_not_ready", {"node": "talos-worker-02"},
                      "50-mayastor", "talos-worker-02"),
    "DiskPool Degraded": (["00", "10", "20", "30", "40", "45", "50", "60"], "lab", "diskpool_degraded",
                          {"pool": "pool-talos-worker-03"}, "70-validation", "pool-talos-worker-03"),
    "storage NIC link down": (["00", "10", "20", "30", "40", "45", "50", "60"], "lab", "storage_link_down",
                              {"node": "talos-worker-02"}, "70-validation", "talos-worker-02"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_stops_the_run_and_resume_completes_it(lab, name):  # noqa: F811
    first, where, kind, fields, stops_at, cause = FAULTS[name]
    spec, target, env, out = lab["spec"], lab["target"], lab["env"], lab["out"]
    before = record_before_state(target, spec)
    params = ("--params", str(lab["params"]))
    if first:
        pre = falkit_run(env, *params, "--outputs", str(out / "pre"), "--only", *first, *FAST)
        assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]
    _inject(lab, where, kind, **fields)
    rest = ["--only", *[n for n in ("00", "10", "20", "30", "40", "45", "50", "60", "70") if n not in first]]
    failed = falkit_run(env, *params, "--outputs", str(out / "run"), *rest, *FAST)
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    msg = failed.stderr
    assert re.search(rf"falkit: {stops_at} failed at cell \d+", msg), msg
    assert cause in msg and "to resume: falkit run --resume" in msg, msg
    run_dir = next((out / "run").glob("*/run.json")).parent
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored["status"] == "failed" and stored["failed"]["notebook"] == stops_at

    _clear(lab, where)
    resumed = falkit_run(env, "--resume", str(run_dir), "--outputs", str(out / "run"), *FAST)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"

    # nothing duplicated
    vms = Counter(v.get("name") for v in target.pve.nodes(target.node).qemu.get())
    assert all(vms[n] == 1 for n in spec.all_vm_names), vms
    target.reset_kube()
    from falkit.clients.kube import klist

    pvcs = Counter(p["metadata"]["name"] for p in klist(target.kube(), "v1", "PersistentVolumeClaim", "media"))
    assert all(c == 1 for c in pvcs.values()) and len(pvcs) == 2 * len(before.checksums), pvcs
    releases = Counter(r["name"] for r in target.helm.list())
    assert all(c == 1 for c in releases.values()), releases
    # nothing lost: every volume's data is on its Mayastor copy, unchanged — but Plex's library,
    # which moved to Plex's container (60's cutover; never to Mayastor), equal on its -lxc claim
    from falkit.steps.plex import plex_state

    after = lab_state(target, spec)
    library = plex_state(target, spec)["library"]
    for key, sha in before.checksums.items():
        if key == "media/plex-config":
            assert library.get(f"{key}-lxc") == sha, (key, library)
        else:
            assert after.checksums.get(f"{key}-mayastor") == sha, (key, after.checksums)
