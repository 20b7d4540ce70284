"""rollback-talos: the control plane and worker-01 back on their pre-migration addresses
(``spec.previous.nodes``, 10.30.0.x), with the Kubernetes and talosctl endpoints, in an order that
keeps the cluster reachable.

Upstream (what the order follows):

- a control plane's etcd member updates its advertised peer URLs when the node's address changes,
  and that update needs etcd quorum, so the node must move "from one set of addresses to another
  while staying connected" (siderolabs/talos issue #12720, smira; PR #6106 "update etcd advertised
  peer addresses on the fly": "Talos node might still need a reboot to update the listen
  addresses"); changing the address outright leaves etcd dialling the old peer URLs (issue #9075);
- ``cluster.controlPlane.endpoint`` is the API server URL every node and kubeconfig uses
  (talos.dev "Cluster Endpoint" guide, which recommends a DNS name so that it survives address
  changes; the seed uses the control plane's IP), and the API server's certificate must name the
  address clients dial (``machine.certSANs`` / ``cluster.apiServer.certSANs``).

The plan (pure; each node's current config is read with ``talosctl get machineconfig`` and edited,
so secrets and everything else stay as they are):

1. **add** — per node, workers first, then the control plane: a config with the old address
   *added* to the management interface, first (``machine.network.interfaces[eth0].addresses`` on
   Talos < 1.12, a ``LinkConfig`` document from 1.12), the old gateway and resolver, both addresses
   in the certSANs; the storage interface (eth1, which the before-state did not have) and node
   labels the before-state's Node did not carry (``openebs.io/engine``) dropped. The node answers
   at both addresses. Disruptive (``apply-config``; a configured node may reboot).
2. **endpoints** — the talosconfig's ``endpoints``/``nodes`` switch to the old addresses (private
   state dir), while the new addresses still answer; ``cluster.controlPlane.endpoint`` switches
   with each node's final config (3).
3. **remove** — the final config (old address only, old endpoint): workers first, while the control
   plane still answers at both addresses, then the control plane.
4. **kubeconfig** — fetched again from the control plane at its old address (``talosctl
   kubeconfig``: its server is the new endpoint), then the Kubernetes API is waited for and every
   Node's InternalIP must be its old address.

A node already at its old address with that final config is a no-op; a node that answers at
neither address is a note. On the twin the same ``talosctl`` stand-in and lab model
(falkit/twin/lab/talos.py: a static address on eth0 moves the node there) do the work.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any

import yaml

from ...clients.backends import BackendError
from ...clients.kube import WaitTimeoutError, klist, kpatch, wait_for
from ...model.errors import StepError
from ...model.schemas import dump_documents, load_documents
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import Sealed, TalosAddressConfig, TalosEndpoints, TalosKubeconfig, WaitNodeAddresses
from ...render.talosconfig import config_digest
from ..base import Check, Progress, StepOptions
from ..executors import Apply, execute, executes
from ._common import _md
from .state import recorded_before


@dataclass(frozen=True)
class TalosNodeFacts:
    name: str
    old_ip: str
    new_ip: str
    reach_ip: str | None
    role: str
    docs: tuple[dict, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class ReipFacts:
    nodes: tuple[TalosNodeFacts, ...]
    drop_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> label keys to drop
    k8s_ips: dict[str, str] = field(default_factory=dict)  # Node name -> InternalIP
    # node -> the openebs.io/ labels it may keep (the before-state's; none without a recording)
    keep_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _current_nodes(spec: LabSpec) -> dict[str, tuple[str, str]]:
    out = {c.name: (c.ip, "control-plane") for c in spec.cluster.control_plane}
    out |= {w.name: (w.ip, "worker") for w in spec.cluster.workers}
    return out


def observe_reip(target: Any, spec: LabSpec) -> ReipFacts:
    if spec.previous is None:
        return ReipFacts(())
    now = _current_nodes(spec)
    nodes = []
    for n in spec.previous.nodes:
        new_ip, role = now.get(n.name, (n.ip, "worker"))
        facts = TalosNodeFacts(n.name, n.ip, new_ip, None, role, error="no answer")
        for ip in dict.fromkeys([n.ip, new_ip]):
            try:
                target.talos.version(ip)
                docs = tuple(load_documents(target.talos.get_config(ip)))
            except BackendError as e:
                facts = TalosNodeFacts(n.name, n.ip, new_ip, None, role, error=f"{ip}: {e.message}")
                continue
            facts = TalosNodeFacts(n.name, n.ip, new_ip, ip, role, docs)
            break
        nodes.append(facts)
    before = recorded_before(target)
    labels: dict[str, set[str]] = {}
    for key in (before.fields if before else {}):
        area, subject, name = key.split("|", 2)
        if area == "node" and name.startswith("label "):
            labels.setdefault(subject, set()).add(name[len("label "):])
    drop = {}
    k8s: dict[str, str] = {}
    # without a recording: the Mayastor label is the migration's (the seed's before had no Mayastor)
    keep = {n.name: tuple(sorted(k for k in labels.get(n.name, set()) if k.startswith("openebs.io/")))
            if before is not None and before.fields else () for n in spec.previous.nodes}
    try:
        api = target.kube()
        for node in klist(api, "v1", "Node"):
            name = _md(node)["name"]
            k8s[name] = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                              if a.get("type") == "InternalIP"), "")
            if name in {n.name for n in spec.previous.nodes}:
                # without a recording: the Mayastor label is the migration's (the seed's before had no Mayastor)
                had = labels.get(name, set()) if before is not None and before.fields else set()
                extra = [k for k in (_md(node).get("labels") or {}) if k.startswith("openebs.io/") and k not in had]
                if extra:
                    drop[name] = tuple(sorted(extra))
    except Exception:  # noqa: BLE001 - the API may be unreachable mid-re-IP; the plan then re-reads Talos only
        pass
    return ReipFacts(tuple(nodes), drop, k8s, keep)


# ------------------------------------------------------------------------------------ config edits

def _prefix(spec: LabSpec) -> int:
    return ipaddress.IPv4Network(spec.previous.network.cidr).prefixlen  # type: ignore[union-attr]


def reip_docs(docs: list[dict], addresses: list[str], gateway: str, endpoint_ip: str, sans: list[str],
              drop_labels: tuple[str, ...] = ()) -> list[dict]:
    """``docs`` (a node's running config) with the management interface (eth0) on ``addresses``
    (``ip/prefix``, the first one primary) and a default route via ``gateway``; other interfaces
    dropped; the resolver ``gateway``; ``cluster.controlPlane.endpoint`` ``https://endpoint_ip:6443``;
    the certSANs ``sans``; ``drop_labels`` removed from ``machine.nodeLabels``. Pure."""
    out = copy.deepcopy(docs)
    for d in out:
        if d.get("version") == "v1alpha1" and "kind" not in d:
            machine = d.setdefault("machine", {})
            net = machine.get("network")
            if net is not None and "interfaces" in net:
                net["interfaces"] = [{"interface": "eth0", "dhcp": False, "addresses": list(addresses),
                                      "routes": [{"network": "0.0.0.0/0", "gateway": gateway}]}]
                if "nameservers" in net:
                    net["nameservers"] = [gateway]
            if "certSANs" in machine:
                machine["certSANs"] = list(sans)
            labels = machine.get("nodeLabels")
            if labels:
                for k in drop_labels:
                    labels.pop(k, None)
                if not labels:
                    machine.pop("nodeLabels")
            cluster = d.get("cluster") or {}
            if "controlPlane" in cluster:
                cluster["controlPlane"]["endpoint"] = f"https://{endpoint_ip}:6443"
            if "certSANs" in (cluster.get("apiServer") or {}):
                cluster["apiServer"]["certSANs"] = list(sans)
    result = []
    for d in out:
        if d.get("kind") == "LinkConfig":
            if d.get("name") != "eth0":
                continue
            d["addresses"] = [{"address": a} for a in addresses]
            d["routes"] = [{"gateway": gateway}]
        elif d.get("kind") == "ResolverConfig":
            d["nameservers"] = [{"address": gateway}]
        result.append(d)
    return result


def _digest(docs: list[dict]) -> str:
    return config_digest(docs)


def plan_reip(spec: LabSpec, f: ReipFacts, options: StepOptions) -> Plan:
    if spec.previous is None:
        return Plan("rollback-talos", notes=("the spec has no 'previous' section: no addresses to return to",))
    prev = spec.previous.network
    prefix = _prefix(spec)
    cp = next((n for n in f.nodes if n.role == "control-plane"), None)
    if cp is None:
        return Plan("rollback-talos", notes=("no control plane among spec.previous.nodes",))
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    ordered = sorted(f.nodes, key=lambda n: n.role == "control-plane")  # workers first
    finals: list[Change] = []
    moved = False
    for n in ordered:
        if n.reach_ip is None:
            notes.append(f"{n.name}: answers at neither {n.old_ip} nor {n.new_ip} ({n.error}); is its VM running?")
            continue
        drop = f.drop_labels.get(n.name, ())
        final = reip_docs(list(n.docs), [f"{n.old_ip}/{prefix}"], prev.gateway, cp.old_ip, [n.old_ip], drop)
        if n.reach_ip == n.old_ip and _digest(list(n.docs)) == _digest(final):
            noops.append(Noop("talos-address", n.name, f"at {n.old_ip}, endpoint https://{cp.old_ip}:6443"))
            continue
        moved = True
        if n.reach_ip != n.old_ip:
            both = reip_docs(list(n.docs), [f"{n.old_ip}/{prefix}", f"{n.reach_ip}/{prefix}"], prev.gateway,
                             cp.reach_ip or cp.new_ip, [n.old_ip, n.reach_ip], drop)
            changes.append(Change("update", "talos-address", n.name, "add", n.reach_ip, f"{n.old_ip} + {n.reach_ip}",
                                  disruptive=True, reason="the old address added first: the node stays reachable "
                                  "(etcd updates its peer URLs while connected)" + (f"; labels {', '.join(drop)} dropped"
                                                                                    if drop else ""),
                                  data=TalosAddressConfig(n.reach_ip, Sealed(dump_documents(both)), n.old_ip,
                                                          tuple(n.docs), tuple(both))))
        finals.append(Change("update", "talos-address", n.name, "remove", f"{n.old_ip} + {n.reach_ip}"
                             if n.reach_ip != n.old_ip else n.old_ip, n.old_ip, disruptive=True,
                             reason=f"only the old address; endpoint https://{cp.old_ip}:6443",
                             data=TalosAddressConfig(n.old_ip, Sealed(dump_documents(final)), n.old_ip,
                                                     tuple(n.docs), tuple(final))))
    if moved:
        changes.append(Change("update", "talosconfig", "talosconfig", "endpoints", cp.reach_ip or cp.new_ip, cp.old_ip,
                              reason="talosctl talks to the control plane at its old address (private state dir)",
                              data=TalosEndpoints(cp.old_ip, tuple(n.old_ip for n in f.nodes))))
        # the workers switch to the old endpoint while the control plane still answers at both; its own last
        changes += sorted(finals, key=lambda c: c.name == cp.name)
        changes.append(Change("action", "kubeconfig", "kubeconfig", "fetch", reason=f"the API server at https://{cp.old_ip}:6443",
                              data=TalosKubeconfig(cp.old_ip)))
    waits = {n.name: n.old_ip for n in f.nodes if f.k8s_ips.get(n.name) not in (None, n.old_ip) or moved}
    if waits:
        changes.append(Change("action", "cluster", spec.cluster.name, "wait", reason="every Node's InternalIP is its old address",
                              data=WaitNodeAddresses(tuple(waits.items()),
                                                     tuple((n.name, f.keep_labels.get(n.name, ())) for n in f.nodes))))
    return Plan("rollback-talos", tuple(changes), tuple(noops), tuple(notes))


def apply_reip(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        for c in plan.changes:
            progress.log(f"rollback-talos: {c.describe()}")
            execute(target, [c], progress, options.wait_timeout_s, step="rollback-talos")
    except (BackendError, WaitTimeoutError) as e:
        raise StepError("rollback-talos", str(e)) from e


@executes(TalosAddressConfig)
def _move_address(c: Change, ctx: Apply) -> None:
    d: TalosAddressConfig = c.data
    talos = ctx.target.talos
    talos.apply_config(d.ip, d.config.value, False)
    wait_for(lambda: talos.version(d.wait_ip), bool, ctx.timeout, f"{c.name} at {d.wait_ip}",
             ctx.progress.task(f"{c.name} at {d.wait_ip}", 1))


@executes(TalosEndpoints)
def _switch_endpoints(c: Change, ctx: Apply) -> None:
    tc = yaml.safe_load(ctx.target.read_private("talosconfig") or "{}") or {}
    cur = (tc.get("contexts") or {}).get(tc.get("context")) or {}
    cur["endpoints"] = [c.data.endpoint]
    cur["nodes"] = list(c.data.nodes)
    ctx.target.write_private("talosconfig", yaml.safe_dump(tc, sort_keys=False))


@executes(WaitNodeAddresses)
def _wait_node_addresses(c: Change, ctx: Apply) -> None:
    target, want = ctx.target, dict(c.data.ips)

    def ips() -> dict[str, str]:
        target.reset_kube()
        return {_md(n)["name"]: next((a["address"] for a in (n.get("status") or {}).get("addresses") or []
                                      if a.get("type") == "InternalIP"), "")
                for n in klist(target.kube(), "v1", "Node")}
    wait_for(ips, lambda have: all(have.get(k) == v for k, v in want.items()), ctx.timeout,
             "Nodes at their old addresses", ctx.progress.task("Nodes at their old addresses", 1))
    _drop_unowned_labels(target.kube(), dict(c.data.keep_labels))


def _drop_unowned_labels(api: Any, keep: dict[str, tuple[str, ...]]) -> None:
    """Mayastor labels the before-state's Nodes did not have and Talos does not own (set by hand)."""
    try:
        nodes = klist(api, "v1", "Node")
    except Exception:  # noqa: BLE001 - as observe_reip: an unreachable API drops nothing
        return
    for node in nodes:
        name = _md(node)["name"]
        if name not in keep:
            continue
        extra = sorted(k for k in (_md(node).get("labels") or {}) if k.startswith("openebs.io/") and k not in keep[name])
        if extra:
            kpatch(api, "v1", "Node", name, {"metadata": {"labels": dict.fromkeys(extra)}})


def reip_checks(target: Any, spec: LabSpec) -> list[Check]:
    if spec.previous is None:
        return []
    f = observe_reip(target, spec)
    # without falkit's talosconfig (a lab falkit never configured) talosctl cannot be asked: the Node says it
    asked = target.read_private("talosconfig") is not None
    out = []
    for n in f.nodes:
        k8s = f.k8s_ips.get(n.name) or "none"
        out.append(Check("node at its old address", n.name, n.old_ip,
                         f"Talos at {n.reach_ip or 'nowhere'}, Node InternalIP {k8s}" if asked
                         else f"Node InternalIP {k8s} (no talosconfig of falkit's: Talos not asked)",
                         (n.reach_ip == n.old_ip or not asked) and k8s == n.old_ip, "re-run rollback-talos"))
    return out
