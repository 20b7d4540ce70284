"""LoadBalancer IPs: Cilium LB-IPAM + L2 announcements, and MetalLB (the "before" state).

Cilium LB-IPAM (operator/pkg/lbipam/lbipam.go at the 1.18 line, read for this module):

* Services ``type: LoadBalancer`` without ``spec.loadBalancerClass`` (or with
  ``io.cilium/l2-announcer``) once a ``CiliumLoadBalancerIPPool`` exists (``cilium.io/v2`` or
  ``v2alpha1`` -- one collection). Blocks are ``{cidr}`` or ``{start, stop}``; ``disabled`` pools
  allocate nothing new; ``serviceSelector`` limits which services a pool serves (with Cilium's
  ``io.kubernetes.service.namespace``/``.name`` labels added: :func:`selection_labels`);
  ``allowFirstLastIPs: "No"`` reserves a CIDR's first and last address (docs/UPSTREAM.md, Cilium: the CRD field of v1.18.10).
* Requested IPs: annotation ``lbipam.cilium.io/ips`` or its alias ``io.cilium/lb-ipam-ips``
  (comma-separated), else ``spec.loadBalancerIP``; otherwise the lowest free address of the first
  matching pool (pools by creation time).
* Service status: ``status.loadBalancer.ingress[{ip}]`` and condition
  ``cilium.io/IPAMRequestSatisfied``: True/``satisfied``, or False with Cilium's reasons and
  messages: ``no_pool`` "No pool exists with a CIDR containing '<ip>'" (a requested IP outside every
  pool), ``pool_selector_mismatch``, ``already_allocated`` "The IP '<ip>' is already allocated to
  another service", ``no_pool`` "There are no enabled CiliumLoadBalancerIPPools that match this
  service", ``out_of_ips``. (Cilium has no ``out_of_range`` reason: an IP outside every pool is
  ``no_pool``.) The first claimant of an IP keeps it (older services first).
* Pool status conditions as Cilium writes them: ``cilium.io/IPsTotal``, ``cilium.io/IPsAvailable``,
  ``cilium.io/IPsUsed`` (status Unknown, reason ``noreason``, the count as message) and
  ``cilium.io/PoolConflict`` (False, ``resolved``; True ``cidr_overlap`` for the newer of two
  overlapping pools, which then allocates nothing).

L2 announcements (Documentation/network/l2-announcements.rst): for a Cilium-owned IP selected by a
``CiliumL2AnnouncementPolicy`` with ``loadBalancerIPs: true`` (``serviceSelector``,
``nodeSelector``, ``interfaces`` regexes over the node's Talos interfaces), a
``coordination.k8s.io/v1`` Lease ``cilium-l2announce-<namespace>-<service>`` in ``kube-system`` is
held by one Ready node running a Cilium agent (``holderIdentity`` = node name, ``renewTime``
renewed). When the holder goes NotReady, another node takes the lease once it expired
(``leaseDurationSeconds``, 15 s by default, scaled by the time factor): 10-20 s failover on a real
lab. Refused -- no leases, a Warning Event ``L2AnnouncementsDisabled`` on the policy -- when the
Cilium release has ``kubeProxyReplacement`` off or ``l2announcements.enabled`` false.

MetalLB (v0.14): with the metallb release and an ``IPAddressPool`` (``metallb.io/v1beta1``,
``spec.addresses`` "a-b" ranges or CIDRs, ``autoAssign``), it assigns IPs, honouring
``metallb.universe.tf/loadBalancerIPs`` (and ``metallb.universe.tf/address-pool``), emits
``IPAllocated`` and, with an ``L2Advertisement`` selecting the pool, ``nodeAssigned`` ("announcing
from node ... with protocol "layer2"") Events. Failures: ``AllocationFailed`` Events.

Which controller owns a Service (documented rule of the twin): annotated for Cilium -> Cilium;
annotated for MetalLB -> MetalLB; otherwise Cilium when any Cilium pool exists, else MetalLB (when
installed with a pool). When the owner goes away its ingress and condition are cleared and the
other controller may assign.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .pods import items, match_labels, node_ready, record_event, set_condition, write_status

log = logging.getLogger(__name__)
CILIUM = "cilium-operator-lb-ipam"
METALLB = "metallb-controller"
SATISFIED = "cilium.io/IPAMRequestSatisfied"
CILIUM_IPS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
METALLB_IPS = ("metallb.universe.tf/loadBalancerIPs", "metallb.universe.tf/address-pool")
CILIUM_CLASSES = (None, "io.cilium/l2-announcer")
LEASE_NS = "kube-system"
#: Real seconds between lease renewals at time factor 0 (see reconcile_l2).
RENEW_AT_TF0_S = 5.0


@dataclass
class Range:
    pool: str
    first: int
    last: int
    reserved: frozenset[int] = frozenset()

    def __contains__(self, ip: int) -> bool:
        return self.first <= ip <= self.last

    def addresses(self):
        return (i for i in range(self.first, self.last + 1) if i not in self.reserved)


def _int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip.strip()))


def _ip(i: int) -> str:
    return str(ipaddress.IPv4Address(i))


def selection_labels(svc: dict) -> dict[str, str]:
    """A Service's labels as Cilium's selectors see them: with ``io.kubernetes.service.namespace``
    and ``io.kubernetes.service.name`` added (Cilium's ``serviceLabelSet``), so a pool or L2
    policy can select one Service that carries no labels at all."""
    md = svc.get("metadata") or {}
    return {**(md.get("labels") or {}), "io.kubernetes.service.namespace": md.get("namespace", ""),
            "io.kubernetes.service.name": md.get("name", "")}


def cilium_ranges(pool: dict) -> list[Range]:
    out = []
    spec = pool.get("spec") or {}
    for b in spec.get("blocks") or []:
        if b.get("cidr"):
            net = ipaddress.ip_network(b["cidr"], strict=False)
            if net.version != 4:
                continue
            first, last = int(net.network_address), int(net.broadcast_address)
            res = frozenset({first, last}) if spec.get("allowFirstLastIPs") == "No" and last - first > 1 else frozenset()
            out.append(Range(pool["metadata"]["name"], first, last, res))
        elif b.get("start"):
            out.append(Range(pool["metadata"]["name"], _int(b["start"]), _int(b.get("stop") or b["start"])))
    return out


def metallb_ranges(pool: dict) -> list[Range]:
    out = []
    for a in (pool.get("spec") or {}).get("addresses") or []:
        if "-" in a:
            lo, hi = a.split("-", 1)
            out.append(Range(pool["metadata"]["name"], _int(lo), _int(hi)))
        else:
            net = ipaddress.ip_network(a, strict=False)
            if net.version == 4:
                out.append(Range(pool["metadata"]["name"], int(net.network_address), int(net.broadcast_address)))
    return out


def _ann(svc: dict) -> dict:
    return svc["metadata"].get("annotations") or {}


def requested_ips(svc: dict, keys=CILIUM_IPS) -> list[str]:
    for k in keys[:1] if keys is METALLB_IPS else keys:
        v = _ann(svc).get(k)
        if v:
            return [x.strip() for x in v.split(",") if x.strip()]
    if keys is CILIUM_IPS and svc["spec"].get("loadBalancerIP"):
        return [svc["spec"]["loadBalancerIP"]]
    return []


def owner_of(svc: dict, cilium_pools: list, metallb_on: bool) -> str | None:
    """``cilium`` | ``metallb`` | None (see the module docstring for the rule)."""
    if svc["spec"].get("type") != "LoadBalancer":
        return None
    cls = svc["spec"].get("loadBalancerClass")
    if cls not in CILIUM_CLASSES and cls != "metallb":
        return None
    ann = _ann(svc)
    if any(k in ann for k in CILIUM_IPS) and cls in CILIUM_CLASSES:
        return "cilium" if cilium_pools else None
    if any(k in ann for k in METALLB_IPS) or cls == "metallb":
        return "metallb" if metallb_on else None
    if cilium_pools:
        return "cilium"
    return "metallb" if metallb_on else None


def _age(o: dict) -> tuple:
    return (o["metadata"].get("creationTimestamp", ""), int(o["metadata"].get("resourceVersion") or 0))


def _pools(ctx) -> list[dict]:
    pools = items(ctx, "cilium.io/v2", "CiliumLoadBalancerIPPool") or \
        items(ctx, "cilium.io/v2alpha1", "CiliumLoadBalancerIPPool")
    return sorted(pools, key=_age)


def _conflicts(pools: list[dict]) -> dict[str, str]:
    """Pool name -> conflict message, for the newer of two pools with overlapping ranges."""
    out: dict[str, str] = {}
    for i, newer in enumerate(pools):
        for older in pools[:i]:
            if older["metadata"]["name"] in out:
                continue
            for a in cilium_ranges(newer):
                for b in cilium_ranges(older):
                    if a.first <= b.last and b.first <= a.last and newer["metadata"]["name"] not in out:
                        out[newer["metadata"]["name"]] = (
                            f"Pool conflicts since range '{_ip(a.first)}-{_ip(a.last)}' overlaps range "
                            f"'{_ip(b.first)}-{_ip(b.last)}' from IP Pool '{older['metadata']['name']}'")
    return out


def _svc_key(svc: dict) -> str:
    return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"


def _current_ips(svc: dict) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]


def _assign(services: list[dict], ranges_for, reqs, taken: dict[int, str]) -> dict[str, tuple]:
    """Allocate for services (oldest first). Returns key -> (ips, None) or ([], (reason, message))."""
    out: dict[str, tuple] = {}
    for svc in sorted(services, key=_age):
        key, rngs = _svc_key(svc), ranges_for(svc)
        want = reqs(svc)
        if want:
            got, err = [], None
            for ip in want:
                try:
                    n = _int(ip)
                except ValueError:
                    err = ("no_pool", f"No pool exists with a CIDR containing '{ip}'")
                    continue
                if not any(n in r for r in rngs[0]):
                    err = ("pool_selector_mismatch", f"The pool with the CIDR containing '{ip}', doesn't select "
                           "this service") if any(n in r for r in rngs[1]) else \
                        ("no_pool", f"No pool exists with a CIDR containing '{ip}'")
                elif taken.get(n, key) != key:
                    err = ("already_allocated", f"The IP '{ip}' is already allocated to another service")
                else:
                    taken[n] = key
                    got.append(ip)
            out[key] = (got, err)
            continue
        kept = [ip for ip in _current_ips(svc) if any(_int(ip) in r for r in rngs[0]) and taken.get(_int(ip), key) == key]
        if kept:
            taken[_int(kept[0])] = key
            out[key] = ([kept[0]], None)
            continue
        if not rngs[0]:
            out[key] = ([], ("no_pool", "There are no enabled CiliumLoadBalancerIPPools that match this service"))
            continue
        free = next((i for r in rngs[0] for i in r.addresses() if i not in taken), None)
        if free is None:
            out[key] = ([], ("out_of_ips", "All enabled CiliumLoadBalancerIPPools that match this service ran out "
                                           "of allocatable IPs"))
        else:
            taken[free] = key
            out[key] = ([_ip(free)], None)
    return out


def reconcile_ipam(ctx) -> dict[str, str]:
    """One pass of both IPAMs; returns service key -> owner for the services that got an IP."""
    pools = _pools(ctx)
    conflicts = _conflicts(pools)
    enabled = [p for p in pools if not (p.get("spec") or {}).get("disabled") and p["metadata"]["name"] not in conflicts]
    mpools = items(ctx, "metallb.io/v1beta1", "IPAddressPool") if ctx.release_of("metallb") else []
    services = [s for s in items(ctx, "v1", "Service")]
    owners = {_svc_key(s): owner_of(s, pools, bool(mpools)) for s in services}
    taken_c: dict[int, str] = {}
    taken_m: dict[int, str] = {}

    def c_ranges(svc):
        sel = [r for p in enabled if match_labels(selection_labels(svc), (p.get("spec") or {}).get("serviceSelector"))
               for r in cilium_ranges(p)]
        return sel, [r for p in enabled for r in cilium_ranges(p)]

    def m_ranges(svc):
        name = _ann(svc).get("metallb.universe.tf/address-pool")
        sel = [r for p in mpools if (p["metadata"]["name"] == name if name else
                                     (p.get("spec") or {}).get("autoAssign", True) or requested_ips(svc, METALLB_IPS))
               for r in metallb_ranges(p)]
        return sel, [r for p in mpools for r in metallb_ranges(p)]

    res_c = _assign([s for s in services if owners[_svc_key(s)] == "cilium"], c_ranges, requested_ips, taken_c)
    res_m = _assign([s for s in services if owners[_svc_key(s)] == "metallb"], m_ranges,
                    lambda s: requested_ips(s, METALLB_IPS), taken_m)
    got = {}
    for svc in services:
        key, owner = _svc_key(svc), owners[_svc_key(svc)]
        st = dict(svc.get("status") or {})
        conds = [c for c in st.get("conditions") or [] if c.get("type") != SATISFIED]
        if owner == "cilium":
            ips, err = res_c[key]
            gen = svc["metadata"].get("generation", 1)
            conds = set_condition(st.get("conditions") or [], SATISFIED, "False" if err else "True",
                                  err[0] if err else "satisfied", err[1] if err else "", gen)
        elif owner == "metallb":
            ips, err = res_m[key]
            if err:
                record_event(ctx, svc, "AllocationFailed", f'Failed to allocate IP for "{key}": {err[1]}', "Warning",
                             METALLB)
            elif ips:
                record_event(ctx, svc, "IPAllocated", f'Assigned IP ["{ips[0]}"]', "Normal", METALLB)
        else:
            ips = []
        if ips:
            got[key] = owner
        st["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]} if ips else {}
        if conds:
            st["conditions"] = conds
        else:
            st.pop("conditions", None)
        if svc["spec"].get("type") == "LoadBalancer" or (svc.get("status") or {}).get("loadBalancer"):
            write_status(ctx, svc, st, CILIUM if owner == "cilium" else METALLB)
    for p in pools:
        _pool_status(ctx, p, taken_c, conflicts.get(p["metadata"]["name"]))
    return got


def _pool_status(ctx, pool: dict, taken: dict[int, str], conflict: str | None) -> None:
    rngs = cilium_ranges(pool)
    total = sum(r.last - r.first + 1 for r in rngs)
    used = sum(1 for r in rngs for i in taken if i in r)
    reserved = sum(len(r.reserved) for r in rngs)
    gen = pool["metadata"].get("generation", 1)
    conds = (pool.get("status") or {}).get("conditions") or []
    conds = set_condition(conds, "cilium.io/PoolConflict", "True" if conflict else "False",
                          "cidr_overlap" if conflict else "resolved", conflict or "", gen)
    for ctype, n in (("cilium.io/IPsTotal", total), ("cilium.io/IPsAvailable", total - used - reserved),
                     ("cilium.io/IPsUsed", used)):
        conds = set_condition(conds, ctype, "Unknown", "noreason", str(n), gen)
    write_status(ctx, pool, {**(pool.get("status") or {}), "conditions": conds}, CILIUM)


# --- L2 announcements ---------------------------------------------------------------------------------

def _micro(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(s: str | None) -> float:
    if not s:
        return 0.0
    return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def cilium_agent_nodes(ctx) -> set[str]:
    """Nodes with a running Cilium agent pod (``k8s-app=cilium``)."""
    return {p["spec"].get("nodeName") for p in items(ctx, "v1", "Pod", label_selector="k8s-app=cilium")
            if (p.get("status") or {}).get("phase") == "Running"}


def _node_interfaces(ctx, node: dict) -> list[str]:
    tn = ctx.node_by_hostname(node["metadata"]["name"])
    return list(tn.addresses) if tn and tn.addresses else ["eth0"]


def _candidates(ctx, policy: dict, cfg) -> list[str]:
    spec = policy.get("spec") or {}
    agents = cilium_agent_nodes(ctx)
    out = []
    for n in items(ctx, "v1", "Node"):
        name = n["metadata"]["name"]
        if not node_ready(n) or name in ctx.faults.node_not_ready or name not in agents:
            continue
        if not match_labels(n["metadata"].get("labels"), spec.get("nodeSelector")):
            continue
        ifaces = _node_interfaces(ctx, n)
        if cfg.devices:
            ifaces = [i for i in ifaces if any(re.fullmatch(d.replace("+", ".*"), i) for d in cfg.devices)]
        pats = spec.get("interfaces") or []
        if pats and not any(re.search(p, i) for p in pats for i in ifaces):
            continue
        if not pats and not ifaces:
            continue
        out.append(name)
    return sorted(out)


def reconcile_l2(ctx, owners: dict[str, str]) -> None:
    """Keep one Lease per announced service (see the module docstring)."""
    policies = items(ctx, "cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy")
    cfg = ctx.cilium_config()
    wanted: dict[str, tuple[dict, list[str], float]] = {}
    if cfg is not None:
        for pol in policies:
            if not (pol.get("spec") or {}).get("loadBalancerIPs"):
                continue
            if not (cfg.kube_proxy_replacement and cfg.l2_announcements):
                missing = [k for k, on in (("kubeProxyReplacement=true", cfg.kube_proxy_replacement),
                                           ("l2announcements.enabled=true", cfg.l2_announcements)) if not on]
                record_event(ctx, {**pol, "metadata": {**pol["metadata"], "namespace": "default"}},
                             "L2AnnouncementsDisabled", "L2 announcements need " + " and ".join(missing) +
                             " in the Cilium release; no service IP is announced", "Warning", "cilium-agent")
                continue
            cands = _candidates(ctx, pol, cfg)
            for svc in items(ctx, "v1", "Service"):
                key = _svc_key(svc)
                if owners.get(key) == "cilium" and match_labels(selection_labels(svc),
                                                                 (pol.get("spec") or {}).get("serviceSelector")):
                    name = f"cilium-l2announce-{svc['metadata']['namespace']}-{svc['metadata']['name']}"
                    wanted.setdefault(name, (svc, cands, cfg.lease_duration_s))
    for lease in items(ctx, "coordination.k8s.io/v1", "Lease", LEASE_NS):
        if lease["metadata"]["name"].startswith("cilium-l2announce-") and lease["metadata"]["name"] not in wanted:
            ctx.store.delete("coordination.k8s.io/v1", "Lease", lease["metadata"]["name"], LEASE_NS)
    now = time.time()
    # Cilium renews each lease every retry period (scaled; at least 0.5 s). At time factor 0 every
    # lab duration is instant and takeover is immediate anyway; renewing several times a second
    # then only burnt CPU on an idle twin (issue 17): renew every RENEW_AT_TF0_S real seconds, a
    # third of the default 15 s lease duration, so renewTime + leaseDurationSeconds stays ahead.
    renew_every = max(ctx.scaled(cfg.lease_retry_period_s) if cfg else 0, 0.5) if ctx.time_factor else RENEW_AT_TF0_S
    for name, (_svc, cands, duration) in wanted.items():
        lease = ctx.store.try_get("coordination.k8s.io/v1", "Lease", name, LEASE_NS)
        if lease is None:
            if cands:
                ctx.store.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": {"name": name, "namespace": LEASE_NS},
                                  "spec": {"holderIdentity": cands[0], "leaseDurationSeconds": int(duration),
                                           "acquireTime": _micro(now), "renewTime": _micro(now),
                                           "leaseTransitions": 0}}, field_manager="cilium-agent")
            continue
        spec = lease["spec"]
        holder, renewed = spec.get("holderIdentity"), _parse_micro(spec.get("renewTime"))
        if holder in cands:
            if now - renewed >= renew_every:
                spec["renewTime"] = _micro(now)
                renewed = now
                ctx.store.update(lease, field_manager="cilium-agent")
            ctx.wake_at(renewed + renew_every)  # the next renewal: a deadline, not a tick
        elif cands and now - renewed >= ctx.scaled(duration):
            spec.update(holderIdentity=cands[0], acquireTime=_micro(now), renewTime=_micro(now),
                        leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
            ctx.store.update(lease, field_manager="cilium-agent")
        elif cands:
            ctx.wake_at(renewed + ctx.scaled(duration))  # the lease expires then: take it over


def reconcile_metallb_l2(ctx, owners: dict[str, str]) -> None:
    """MetalLB announces each of its IPs from one Ready node (memberlist election; no Lease)."""
    if not ctx.release_of("metallb"):
        return
    advs = items(ctx, "metallb.io/v1beta1", "L2Advertisement")
    if not advs:
        return
    ready = sorted(n["metadata"]["name"] for n in items(ctx, "v1", "Node") if node_ready(n))
    for svc in items(ctx, "v1", "Service"):
        if owners.get(_svc_key(svc)) == "metallb" and ready:
            record_event(ctx, svc, "nodeAssigned", f'announcing from node "{ready[0]}" with protocol "layer2"',
                         "Normal", "metallb-speaker")


def reconcile(ctx) -> None:  # noqa: ANN001 - LabContext
    owners = reconcile_ipam(ctx)
    reconcile_l2(ctx, owners)
    reconcile_metallb_l2(ctx, owners)


async def run(ctx) -> None:  # noqa: ANN001 - LabContext
    """Reconcile on every change and at each lease's renewal / expiry deadline (``ctx.wake_at``)."""
    while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
        try:
            reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("lbipam reconcile failed")
        await ctx.wait_change()
