"""The Talos re-IP of the rollback as data (rollback-talos's plan; the rehearsal applies it on the twin).

Covers: a node's running config edited for its old address (eth0 on 10.30.0.x/24 via 10.30.0.1,
the storage NIC dropped, the resolver, certSANs, ``cluster.controlPlane.endpoint``, the Mayastor
node label dropped, secrets untouched); the order that keeps the cluster reachable — the old address
added on the workers, then on the control plane, the talosconfig endpoints switched, the final
configs (workers first, the control plane last), the kubeconfig fetched from the old control-plane
address, then the wait for the Nodes' InternalIPs; every config change disruptive, and the whole
plan refused by the runbook unless ``rollback=True`` (and ``allow_disruptive``); a node already at
its old address with its final config plans nothing; a node answering nowhere is a note.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from falkit.model.schemas import load_documents
from falkit.model.spec import load_spec
from falkit.runbook import refuse
from falkit.steps.base import StepOptions
from falkit.steps.rollback.talos import ReipFacts, TalosNodeFacts, plan_reip, reip_docs

FAL = load_spec(Path(__file__).resolve().parents[1] / "parameters" / "fal.yaml")


def migrated_docs(ip: str, worker: bool) -> list[dict]:
    machine = {"type": "worker" if worker else "controlplane", "token": "SECRET-TOKEN", "certSANs": [ip],
               "network": {"hostname": "n", "nameservers": ["10.10.0.1"], "interfaces": [
                   {"interface": "eth0", "dhcp": False, "addresses": [f"{ip}/24"],
                    "routes": [{"network": "0.0.0.0/0", "gateway": "10.10.0.1"}]}]}}
    if worker:
        machine["network"]["interfaces"].append({"interface": "eth1", "dhcp": False, "addresses": ["10.11.0.11/24"]})
        machine["nodeLabels"] = {"openebs.io/engine": "mayastor"}
    cluster = {"controlPlane": {"endpoint": "https://10.10.0.10:6443"}, "clusterName": "homelab-test"}
    if not worker:
        cluster["apiServer"] = {"certSANs": [ip]}
    return [{"version": "v1alpha1", "machine": machine, "cluster": cluster}]


def migrated() -> ReipFacts:
    return ReipFacts((TalosNodeFacts("talos-cp-01", "10.30.0.10", "10.10.0.10", "10.10.0.10", "control-plane",
                                     tuple(migrated_docs("10.10.0.10", False))),
                      TalosNodeFacts("talos-worker-01", "10.30.0.11", "10.10.0.11", "10.10.0.11", "worker",
                                     tuple(migrated_docs("10.10.0.11", True)))),
                     {"talos-worker-01": ("openebs.io/engine",)},
                     {"talos-cp-01": "10.10.0.10", "talos-worker-01": "10.10.0.11"})


def test_config_edited_for_the_old_address():
    docs = reip_docs(migrated_docs("10.10.0.11", True), ["10.30.0.11/24", "10.10.0.11/24"], "10.30.0.1", "10.30.0.10",
                     ["10.30.0.11", "10.10.0.11"], ("openebs.io/engine",))
    m = docs[0]["machine"]
    assert m["network"]["interfaces"] == [{"interface": "eth0", "dhcp": False, "addresses": ["10.30.0.11/24", "10.10.0.11/24"],
                                           "routes": [{"network": "0.0.0.0/0", "gateway": "10.30.0.1"}]}]
    assert m["network"]["nameservers"] == ["10.30.0.1"] and m["certSANs"] == ["10.30.0.11", "10.10.0.11"]
    assert "nodeLabels" not in m and m["token"] == "SECRET-TOKEN"
    assert docs[0]["cluster"]["controlPlane"]["endpoint"] == "https://10.30.0.10:6443"


def test_order_keeps_the_cluster_reachable_and_is_refused_without_rollback():
    plan = plan_reip(FAL, migrated(), StepOptions())
    rows = [(c.kind, c.name, c.field) for c in plan.changes]
    assert rows == [("talos-address", "talos-worker-01", "add"), ("talos-address", "talos-cp-01", "add"),
                    ("talosconfig", "talosconfig", "endpoints"),
                    ("talos-address", "talos-worker-01", "remove"), ("talos-address", "talos-cp-01", "remove"),
                    ("kubeconfig", "kubeconfig", "fetch"), ("cluster", "homelab-test", "wait")]
    add_cp = plan.changes[1].data
    assert add_cp.ip == "10.10.0.10" and add_cp.wait_ip == "10.30.0.10"
    # while adding, the endpoint stays where the cluster is; the final config moves it
    assert add_cp.planned[0]["cluster"]["controlPlane"]["endpoint"] == "https://10.10.0.10:6443"
    assert load_documents(add_cp.config.value) == list(add_cp.planned)  # what apply-config gets
    final_w = plan.changes[3].data
    assert final_w.ip == "10.30.0.11" and final_w.planned[0]["machine"]["network"]["interfaces"][0]["addresses"] \
        == ["10.30.0.11/24"]
    assert "SECRET" not in repr(plan.changes)  # configs are sealed
    archived = json.dumps(plan.to_json(redact=True))
    assert "SECRET-TOKEN" not in archived and archived.count("<Sealed: not archived>") == 4
    with pytest.raises(TypeError, match="Sealed, which does not serialise"):
        plan.to_json()
    assert plan.changes[5].data.ip == "10.30.0.10"
    assert plan.changes[6].data.ips == (("talos-cp-01", "10.30.0.10"), ("talos-worker-01", "10.30.0.11"))
    assert all(c.disruptive for c in plan.changes if c.kind == "talos-address")
    refusal = refuse(plan, StepOptions())
    assert refusal.requires == ("rollback",) and refusal.disruptive
    assert not refuse(plan, StepOptions(allow_disruptive=True, extra={"rollback": True}))


def test_done_is_a_noop_and_a_silent_node_is_a_note():
    cp_final = reip_docs(migrated_docs("10.10.0.10", False), ["10.30.0.10/24"], "10.30.0.1", "10.30.0.10", ["10.30.0.10"])
    w_final = reip_docs(migrated_docs("10.10.0.11", True), ["10.30.0.11/24"], "10.30.0.1", "10.30.0.10", ["10.30.0.11"],
                        ("openebs.io/engine",))
    done = ReipFacts((TalosNodeFacts("talos-cp-01", "10.30.0.10", "10.10.0.10", "10.30.0.10", "control-plane", tuple(cp_final)),
                      TalosNodeFacts("talos-worker-01", "10.30.0.11", "10.10.0.11", "10.30.0.11", "worker", tuple(w_final))),
                     {}, {"talos-cp-01": "10.30.0.10", "talos-worker-01": "10.30.0.11"})
    plan = plan_reip(FAL, done, StepOptions())
    assert not plan.changes and len(plan.noops) == 2
    silent = ReipFacts((done.nodes[0], TalosNodeFacts("talos-worker-01", "10.30.0.11", "10.10.0.11", None, "worker",
                                                      error="10.30.0.11: connection refused")), {}, dict(done.k8s_ips))
    plan = plan_reip(FAL, silent, StepOptions())
    assert any("talos-worker-01: answers at neither" in n for n in plan.notes)
