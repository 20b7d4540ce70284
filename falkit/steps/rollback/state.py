"""The before-state: :func:`lab_state` (every field the rollback compares), :func:`record_before_state`,
:func:`comparison` (the before/after table) and the final step's :func:`before_state_checks`.

Compared fields (``area|subject|field`` -> value, :data:`falkit.steps.probes.Snapshot`):

- **Proxmox** (``GET /nodes/{node}/network``, ``…/qemu``, ``…/lxc``): each bridge's ports, address
  and gateway; each VM's name, cores, memory, balloon, cpu, ``net0``/``net1`` (MAC and bridge),
  ``scsi0``/``scsi1`` (storage and size) and status; each container's hostname and status;
- **Kubernetes**: each Node's InternalIP and its ``openebs.io/*`` labels; each LoadBalancer
  Service's IP; MetalLB's ``IPAddressPool``/``L2Advertisement``; every StorageClass (provisioner);
  every claim (class, size, ``falkit.io/migrated-from``); Mayastor DiskPools; Cilium LB pools and
  L2 policies; Argo CD Applications; the Helm releases ``metallb`` and ``longhorn``;
- **Git**: the GitOps checkout's tree (sha256 of every file outside ``.git``);
- **data**: the claims each workload mounts and a checksum (checksum Job) per mounted claim.

What the operator keeps by a parameter (the rollback's options) is shown as ``kept (<option>)``:
the extra workers' VMs without ``destroy_extra_workers``, the Mayastor copies (and the DiskPools and
StorageClass that hold their replicas) without ``delete_migrated_volumes``, containers the migration
added without ``destroy_new_containers``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from ...clients.kube import klist
from ...clients.proxmox import call, list_vms
from ...model.spec import LabSpec
from ..base import Check, StepOptions
from ..network import current, observe_network
from ..probes import (
    LabState,
    Snapshot,
    compare_snapshots,
    compare_states,
    comparison_checks,
    lb_ip,
    snapshot_key,
)
from ..volumes import CHECKSUM, MIGRATED_FROM, WORKLOAD_KINDS, checkout_path, claims_in, consumers
from ._common import _ann, _checksum, _key, _md
from .lb import service_ip_checks

BEFORE_FILE = "before-state.json"
COMPARISON_FILE = "80-rollback.before-after.json"
VM_FIELDS = ("name", "cores", "memory", "balloon", "cpu", "net0", "net1", "scsi0", "scsi1")
HELM_RELEASES = (("metallb-system", "metallb"), ("longhorn-system", "longhorn"))
MAYASTOR_POOL = ("openebs.io/v1beta2", "DiskPool")


def next_start_config(vm: Any) -> dict[str, Any]:
    """A VM's config as it will be at its next start: the config with its pending changes."""
    cfg = dict(vm.config)
    for k, v in (vm.pending or {}).items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def pve_fields(target: Any) -> Snapshot:
    out: Snapshot = {}
    for name, iface in observe_network(target.pve, target.node).interfaces.items():
        if iface.get("type") != "bridge":
            continue
        have = current(iface)
        for f in ("bridge_ports", "cidr", "gateway"):
            out[snapshot_key("bridge", name, f)] = have[f] or "(none)"
    for vmid, vm in list_vms(target.pve, target.node).items():
        for f, v in next_start_config(vm).items():
            if f in VM_FIELDS:
                out[snapshot_key("vm", f"VM {vmid}", f)] = str(v)
        out[snapshot_key("vm", f"VM {vmid}", "status")] = vm.status
    node = target.pve.nodes(target.node)
    for ct in call(f"list containers on {target.node}", node.lxc.get):
        subject = f"CT {ct['vmid']}"
        out[snapshot_key("container", subject, "name")] = str(ct.get("name") or "")
        out[snapshot_key("container", subject, "status")] = str(ct.get("status") or "")
        cfg = call(f"read CT {ct['vmid']}", node.lxc(ct["vmid"]).config.get)
        for k, v in sorted(cfg.items()):
            if k.startswith("net") or k == "dev0":
                out[snapshot_key("container", subject, k)] = str(v)
    return out


def kube_fields(target: Any) -> Snapshot:
    api = target.kube()
    out: Snapshot = {}
    for n in klist(api, "v1", "Node"):
        name = _md(n)["name"]
        ips = [a["address"] for a in (n.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]
        out[snapshot_key("node", name, "InternalIP")] = ", ".join(ips) or "(none)"
        for k, v in sorted((_md(n).get("labels") or {}).items()):
            if k.startswith("openebs.io/"):
                out[snapshot_key("node", name, f"label {k}")] = str(v)
    for s in klist(api, "v1", "Service"):
        if (s.get("spec") or {}).get("type") == "LoadBalancer":
            out[snapshot_key("service", _key(s), "ip")] = lb_ip(s) or "(none)"
    for p in klist(api, "metallb.io/v1beta1", "IPAddressPool"):
        out[snapshot_key("metallb", f"IPAddressPool {_key(p)}", "addresses")] = ", ".join((p.get("spec") or {}).get("addresses") or [])
    for a in klist(api, "metallb.io/v1beta1", "L2Advertisement"):
        out[snapshot_key("metallb", f"L2Advertisement {_key(a)}", "pools")] = \
            ", ".join((a.get("spec") or {}).get("ipAddressPools") or []) or "(all)"
    for sc in klist(api, "storage.k8s.io/v1", "StorageClass"):
        out[snapshot_key("storageclass", _md(sc)["name"], "provisioner")] = str(sc.get("provisioner") or "")
    for c in klist(api, "v1", "PersistentVolumeClaim"):
        spec = c.get("spec") or {}
        out[snapshot_key("claim", _key(c), "class, size")] = \
            f"{spec.get('storageClassName')}, {((spec.get('resources') or {}).get('requests') or {}).get('storage')}"
        if _ann(c).get(MIGRATED_FROM):
            out[snapshot_key("claim", _key(c), "migrated-from")] = _ann(c)[MIGRATED_FROM]
    for p in klist(api, *MAYASTOR_POOL):
        out[snapshot_key("diskpool", _key(p), "node")] = str((p.get("spec") or {}).get("node") or "")
    for version in ("cilium.io/v2", "cilium.io/v2alpha1"):
        pools = klist(api, version, "CiliumLoadBalancerIPPool")
        for p in pools:
            out[snapshot_key("cilium", f"CiliumLoadBalancerIPPool {_md(p)['name']}", "present")] = "yes"
        if pools:
            break
    for p in klist(api, "cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy"):
        out[snapshot_key("cilium", f"CiliumL2AnnouncementPolicy {_md(p)['name']}", "present")] = "yes"
    for a in klist(api, "argoproj.io/v1alpha1", "Application", "argocd"):
        out[snapshot_key("argocd", f"Application {_md(a)['name']}", "path")] = \
            str(((a.get("spec") or {}).get("source") or {}).get("path") or "")
    for ns, name in HELM_RELEASES:
        rel = target.helm.get(ns, name)
        if rel is not None:
            out[snapshot_key("helm", f"{ns}/{name}", "chart")] = str(rel.get("chart") or rel.get("version") or "installed")
    return out


def git_fields(target: Any, spec: LabSpec | None, checkout: Path | None = None) -> Snapshot:
    """The GitOps tree (sha256 per file) of the checkout on ``target`` (``spec`` None: ``checkout``)."""
    path = checkout_path(spec.gitops, StepOptions(), target) if spec is not None else checkout
    out: Snapshot = {}
    if path is None or not path.is_dir():
        return out
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and ".git" not in rel.parts:
            out[snapshot_key("gitops", str(rel), "sha256")] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return out


def lab_state(target: Any, spec: LabSpec | None, timeout: float = 300.0, checkout: Path | None = None) -> LabState:
    """Every compared field (module docstring), the claims each workload mounts and a checksum
    (checksum Job) per mounted claim."""
    api = target.kube()
    services = {_key(s): lb_ip(s) for s in klist(api, "v1", "Service")
                if (s.get("spec") or {}).get("type") == "LoadBalancer"}
    claims: dict[str, list[str]] = {}
    sums: dict[str, str] = {}
    for kind in WORKLOAD_KINDS:
        for w in klist(api, "apps/v1", kind):
            mounted = claims_in(w)
            if mounted:
                ns = _md(w)["namespace"]
                claims[f"{ns}/{kind}/{_md(w)['name']}"] = mounted
                for c in mounted:
                    sums.setdefault(f"{ns}/{c}", _checksum(api, ns, c, timeout))
    fields = {**pve_fields(target), **kube_fields(target), **git_fields(target, spec, checkout)}
    return LabState(services, claims, sums, fields)


def record_before_state(target: Any, spec: LabSpec | None, checkout: Path | None = None) -> LabState:
    """Record the before-state (before the migration) in the private dir for the rollback's check
    (``spec`` None: the GitOps tree of ``checkout``, as the before-state step planned it)."""
    state = lab_state(target, spec, checkout=checkout)
    target.write_private(BEFORE_FILE, json.dumps(state.to_json(), indent=2, sort_keys=True))
    return state


def recorded_before(target: Any) -> LabState | None:
    text = target.read_private(BEFORE_FILE)
    return LabState.from_json(json.loads(text)) if text else None


def state_snapshot(state: LabState) -> Snapshot:
    """Every compared field of ``state`` as one snapshot (the data part under area ``data``)."""
    out = dict(state.fields)
    for key, claims in state.workload_claims.items():
        out[snapshot_key("data", key, "claims")] = ", ".join(claims)
    for key, sha in state.checksums.items():
        out[snapshot_key("data", key, "sha256")] = sha[:16]
    return out


def kept_by_options(before: Snapshot, after: Snapshot, options: StepOptions) -> dict[str, str]:
    """The differing fields a rollback option keeps: key -> ``option=value``."""
    extra = options.extra or {}
    kept: dict[str, str] = {}
    copies = {k.split("|")[1] for k in after if k.startswith("claim|") and k.endswith("|migrated-from")}
    keep_copies = bool(copies) and not extra.get("delete_migrated_volumes", False)
    for key in set(before) | set(after):
        if before.get(key) == after.get(key):
            continue
        area, subject, _f = key.split("|", 2)
        new = not any(k.startswith(f"{area}|{subject}|") for k in before)
        if area == "vm" and new and not extra.get("destroy_extra_workers", False):
            kept[key] = "destroy_extra_workers=False"
        elif area == "container" and new and not extra.get("destroy_new_containers", False):
            kept[key] = "destroy_new_containers=False"
        elif area == "claim" and subject in copies and keep_copies:
            kept[key] = "delete_migrated_volumes=False"
        elif area in ("diskpool", "storageclass") and new and keep_copies:
            kept[key] = "delete_migrated_volumes=False: the copies' replicas live there"
    # a bridge the before-state did not have stays while a kept VM or container has a NIC on it
    for key in [k for k in set(before) | set(after) if k.startswith("bridge|") and before.get(k) != after.get(k)]:
        bridge = key.split("|")[1]
        users = sorted({k.split("|")[1] for k, v in after.items() if k in kept and k.split("|")[0] in ("vm", "container")
                        and k.split("|")[2].startswith("net") and f"bridge={bridge}" in v.split(",")})
        if users and not any(k.startswith(f"bridge|{bridge}|") for k in before):
            why = sorted({kept[k] for k in kept if k.split("|")[1] in users})
            kept[key] = f"used by {', '.join(users)}, kept: {'; '.join(why)}"
    return kept


def comparison(before: LabState, after: LabState, options: StepOptions) -> list[dict[str, Any]]:
    """The before/after table (:func:`falkit.steps.probes.compare_snapshots`); the data checksums only
    for the claims the before-state mounted (a copy kept unmounted has no checksum Job after)."""
    b, a = state_snapshot(before), state_snapshot(after)
    a = {k: v for k, v in a.items() if not k.startswith("data|") or k in b}
    return compare_snapshots(b, a, kept_by_options(b, a, options))


_LAST: list[list[dict[str, Any]]] = []  # the last comparison made in this process (the notebook's kernel)


def last_comparison() -> list[dict[str, Any]] | None:
    """The last before/after comparison of this kernel (step ``rollback``'s checks; None before the
    rollback has been compared). The notebook shows it with ``lab.before_after()``
    (:func:`falkit.runbook.display.before_after_table`)."""
    return _LAST[-1] if _LAST else None


def archive_comparison(table: list[dict[str, Any]]) -> Path | None:
    """Write the table next to the run's results (``$FALKIT_RUN_DIR``), if there is a run."""
    _LAST.append(table)
    run_dir = os.environ.get("FALKIT_RUN_DIR")
    if not run_dir or not Path(run_dir).is_dir():
        return None
    path = Path(run_dir) / COMPARISON_FILE
    path.write_text(json.dumps(table, indent=2))
    return path


def host_network_checks(target: Any, spec: LabSpec, services: dict[str, dict]) -> list[Check]:
    """Each restored service IP (``old_ip``) must lie on the host's management network (vmbr0's
    subnet): MetalLB answers ARP for it on that L2 segment, and a 10.30.0.x IP behind a host that
    is on 10.10.0.0/24 is reachable from nowhere the operator expects."""
    bridge = spec.previous.network.bridge if spec.previous else spec.networks.management.bridge
    iface = observe_network(target.pve, target.node).interfaces.get(bridge)
    cidr = current(iface)["cidr"] if iface else ""
    net = ipaddress.IPv4Interface(cidr).network if cidr else None
    out = []
    for s in spec.services:
        if not s.old_ip:
            continue
        svc = services.get(f"{s.namespace}/{s.name}")
        ip = lb_ip(svc) if svc else ""
        ok = bool(ip and net is not None and ipaddress.IPv4Address(ip) in net)
        out.append(Check("service IP on the host network", f"{s.namespace}/{s.name}", f"in {net or cidr or '?'} ({bridge})",
                         ip or "no IP", ok, f"{bridge} is {cidr or 'absent'}: re-run rollback-network "
                         "(the host's old address and gateway)"))
    return out


def before_state_checks(target: Any, spec: LabSpec, options: StepOptions | None = None) -> list[Check]:
    recorded = target.read_private(BEFORE_FILE)
    api = target.kube()
    on_host = host_network_checks(target, spec, {_key(s): s for s in klist(api, "v1", "Service")})
    if recorded:
        before = LabState.from_json(json.loads(recorded))
        now = lab_state(target, spec)
        if not before.fields:  # recorded by an older falkit: service IPs, claims and data only
            return compare_states(before, now) + on_host
        table = comparison(before, now, options or StepOptions())
        archive_comparison(table)
        return comparison_checks(table) + on_host
    out = service_ip_checks(spec, {_key(s): s for s in klist(api, "v1", "Service")}) + on_host
    pvcs = {_key(p): p for p in klist(api, "v1", "PersistentVolumeClaim")}
    workloads = tuple(w for k in WORKLOAD_KINDS for w in klist(api, "apps/v1", k))
    for key, new in sorted(pvcs.items()):
        old = _ann(new).get(MIGRATED_FROM)
        if not old:
            continue
        ns, new_name = key.split("/", 1)
        users = consumers(workloads, ns, new_name)
        out.append(Check("workload claim as before", f"{ns}/{old}", "workloads on the original claim",
                         "on the Mayastor copy: " + ", ".join(_md(w)["name"] for w in users) if users else "yes", not users,
                         "re-run 80-rollback (rollback-volumes)"))
        recorded_sum = _ann(new).get(CHECKSUM)
        if recorded_sum and f"{ns}/{old}" in pvcs:
            now = _checksum(api, ns, old, 300.0)
            out.append(Check("volume data as before", f"{ns}/{old}", recorded_sum[:16], now[:16], now == recorded_sum,
                             "the original differs from the data migrated: if the copy was written since, rollback-volumes "
                             "copies it back; compare with the Mayastor copy (kept)"))
    return out
