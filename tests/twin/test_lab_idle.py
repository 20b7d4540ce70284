"""An idle twin does no work, and still reacts at once (issue 17).

Covers: with nothing changing, the lab's controllers (run by the lab as in ``lab_process``) make no
request to the twin's Proxmox and write nothing to the Kubernetes store -- there is no fixed tick;
a change made through the PVE API with proxmoxer (a worker VM stopped) still reaches them through
the pve process's change feed, without anyone dropping the lab's cache: the worker's Node turns
Unknown; the store change that follows wakes the other controllers (the Node's Pods follow).
"""

from __future__ import annotations

import time

import requests
from pve_fixtures import wait_task


def feed(lab) -> dict:
    """The pve process's change feed, answered at once: ``seq`` and ``served`` (requests answered)."""
    info = lab.pve.info
    r = requests.get(f"https://{info['host']}:{info['port']}/twin/changes?since=-1&timeout=0",
                     headers={"Authorization": f"PVEAPIToken=root@pam!falkit={lab.pve.token}"},
                     verify=info["ca_file"], timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def node_ready(lab, name: str) -> str:
    from kubernetes.client.exceptions import ApiException

    try:
        node = lab.core.read_node(name)
    except ApiException as e:  # not registered yet (a loaded machine: the lab is still starting)
        if e.status == 404:
            return ""
        raise
    return next(c.status for c in node.status.conditions if c.type == "Ready")


def test_idle_lab_reads_nothing_and_still_reacts_to_proxmox(lab_before):
    lab = lab_before
    lab.wait(lambda: node_ready(lab, "talos-worker-01") == "True", what="worker Ready")
    # let the first passes settle (on a loaded machine they take longer: wait for a quiet second,
    # which a tick-driven lab never has — it read Proxmox several times a second)
    deadline = time.monotonic() + 30
    while True:
        b, rv0 = feed(lab), lab.store.resource_version
        time.sleep(1.0)
        a = feed(lab)
        if a["served"] - b["served"] <= 2 and lab.store.resource_version == rv0 and a["seq"] == b["seq"]:
            break
        assert time.monotonic() < deadline, f"the lab never went quiet: {a['served'] - b['served']} requests in 1 s"
    before, rv = feed(lab), lab.store.resource_version
    time.sleep(3.0)
    after = feed(lab)
    # The tick-driven lab read /cluster/resources and every VM's config several times a second.
    # Now: the feed call itself, and at most one renewed long poll.
    assert after["served"] - before["served"] <= 2, after["served"] - before["served"]
    assert lab.store.resource_version == rv  # nothing rewritten while idle
    assert after["seq"] == before["seq"]

    api = lab.pve.api()
    wait_task(api, lab.pve.node, api.nodes(lab.pve.node).qemu(201).status.stop.post())
    assert feed(lab)["seq"] > after["seq"]
    lab.wait(lambda: node_ready(lab, "talos-worker-01") == "Unknown", timeout=10,
             what="stopped VM -> Node Unknown via the change feed")
