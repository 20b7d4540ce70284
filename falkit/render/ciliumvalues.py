"""Cilium's Helm values and its LB-IPAM objects for The Fal (pure functions of the spec).

Values follow Sidero's "Deploying Cilium CNI" guide for Talos (docs.siderolabs.com,
kubernetes-guides/cni/deploying-cilium, Cilium 1.18): ``ipam.mode: kubernetes``; kube-proxy
replaced (``kubeProxyReplacement: true``; Talos' ``cluster.proxy.disabled: true``) with the API
server reached through KubePrism at ``localhost:7445`` — which exists only because 30-talos enables
``machine.features.kubePrism`` on that port (:data:`falkit.render.talosconfig.KUBEPRISM_PORT`; Talos leaves it
off unless the config turns it on); Talos already mounts cgroup v2 and bpffs
(``cgroup.autoMount.enabled: false``, ``cgroup.hostRoot: /sys/fs/cgroup``); Talos does not let
workloads load kernel modules, so ``SYS_MODULE`` is dropped from the agent's capabilities.

On top, the seed's LB features (docs/FACTS.md, Cilium): ``l2announcements.enabled``,
``externalIPs.enabled``, ``k8sClientRateLimit`` sized by :func:`falkit.model.findings.client_rate_limit`
(each L2 lease is renewed within the renew deadline), and ``devices`` listing the announcing NIC
(eth0; eth1 for the storage network) — if ``devices`` is set it must include it.

:func:`lb_pools` / :func:`l2_policy` are the ``CiliumLoadBalancerIPPool`` objects and the
``CiliumL2AnnouncementPolicy`` (``loadBalancerIPs: true``) in the API versions
:func:`falkit.model.findings.cilium_api` gives. The pools together hold exactly the spec's range
(``spec.blocks`` with start/stop, ``allowFirstLastIPs`` explicit), split so that an address pinned
to a service can go to that service only: ``lb-pool`` holds the range *without* the pinned
addresses (every service may draw from it), and each pinned address is a pool of its own whose
``serviceSelector`` matches that one service by the labels Cilium adds for selection,
``io.kubernetes.service.namespace`` and ``io.kubernetes.service.name``. Without the split, Cilium
hands the next free address to a service without a pinned IP ("auto") — which can be the address
of a pinned service not deployed yet, which then never gets it. All pools carry
``app.kubernetes.io/managed-by: falkit``.
:func:`check_values` validates against the chart's ``values.schema.json`` (types only).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model.design import design_of
from ..model.findings import cilium_api, client_rate_limit
from ..model.schemas import SchemaValidationError, validate_cilium_values
from ..model.spec import LabSpec
from .talosconfig import KUBEPRISM_PORT

CHART = "cilium"  # from https://helm.cilium.io/ (falkit.clients.backends.helm.CHART_REPOSITORIES)
RELEASE = ("kube-system", "cilium")
POOL_NAME = "lb-pool"
POLICY_NAME = "l2-announcements"
METALLB_ANNOTATIONS = ("metallb.universe.tf/loadBalancerIPs", "metallb.universe.tf/address-pool",
                       "metallb.universe.tf/ip-allocated-from-pool", "metallb.io/loadBalancerIPs", "metallb.io/address-pool")
AGENT_CAPABILITIES = ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN", "SYS_RESOURCE",
                      "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
CLEAN_STATE_CAPABILITIES = ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]


def devices(spec: LabSpec) -> list[str]:
    """The NICs Cilium attaches to: eth0 (management, announces LB IPs) and eth1 (storage), the
    workers' guest devices as the design names them."""
    return sorted({n.device for w in design_of(spec).workers for n in w.nics})


def values(spec: LabSpec) -> dict[str, Any]:
    c = spec.cilium
    rl = c.k8s_client_rate_limit
    need = client_rate_limit(spec)
    return {
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": bool(c.kube_proxy_replacement),
        "k8sServiceHost": "localhost",
        "k8sServicePort": KUBEPRISM_PORT,
        "securityContext": {"capabilities": {"ciliumAgent": AGENT_CAPABILITIES, "cleanCiliumState": CLEAN_STATE_CAPABILITIES}},
        "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
        "l2announcements": {"enabled": bool(c.l2_announcements), "leaseRenewDeadline": f"{c.lease_renew_deadline_s}s"},
        "externalIPs": {"enabled": bool(c.external_ips)},
        "k8sClientRateLimit": {"qps": rl.qps if rl else need["qps"], "burst": rl.burst if rl else need["burst"]},
        "devices": devices(spec),
    }


def check_values(spec: LabSpec, vals: dict[str, Any] | None = None) -> dict[str, Any]:
    """``values(spec)`` (or ``vals``) validated against the chart schema of the Cilium version."""
    vals = values(spec) if vals is None else vals
    issues = validate_cilium_values(vals, spec.versions.cilium)
    if issues:
        raise SchemaValidationError(f"Cilium {spec.versions.cilium} Helm values", issues)
    return vals


MANAGED_BY = {"app.kubernetes.io/managed-by": "falkit"}
PINNED_PREFIX = "lb-pinned-"
SVC_NS_LABEL, SVC_NAME_LABEL = "io.kubernetes.service.namespace", "io.kubernetes.service.name"


def pinned_ips(spec: LabSpec) -> dict[str, tuple[str, str]]:
    """Pinned address -> (namespace, name) of its service, for the addresses inside the spec's pool."""
    design = design_of(spec)
    return {s.requested: (s.namespace, s.name) for s in design.services
            if s.requested not in ("auto", "disabled") and design.in_lb_pool(s.requested)}


def blocks_without(start: str, stop: str, holes: set[str]) -> list[dict[str, str]]:
    """``start``-``stop`` as start/stop blocks with the ``holes`` left out (pure)."""
    out, run = [], None
    for i in range(int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(stop)) + 1):
        ip = str(ipaddress.IPv4Address(i))
        if ip in holes:
            if run:
                out.append(run)
            run = None
        elif run is None:
            run = {"start": ip, "stop": ip}
        else:
            run["stop"] = ip
    if run:
        out.append(run)
    return out


def lb_pools(spec: LabSpec) -> list[dict[str, Any]]:
    """The pools (see the module docstring): ``lb-pool`` first, then one per pinned address."""
    api = cilium_api(spec.versions.cilium)["pool"]
    pinned = pinned_ips(spec)
    out = []
    free = blocks_without(*design_of(spec).lb_pool, set(pinned))
    if free:
        out.append({"apiVersion": api, "kind": "CiliumLoadBalancerIPPool",
                    "metadata": {"name": POOL_NAME, "labels": dict(MANAGED_BY)},
                    "spec": {"blocks": free, "allowFirstLastIPs": "Yes"}})
    for ip, (ns, name) in sorted(pinned.items(), key=lambda kv: ipaddress.IPv4Address(kv[0])):
        out.append({"apiVersion": api, "kind": "CiliumLoadBalancerIPPool",
                    "metadata": {"name": f"{PINNED_PREFIX}{ns}-{name}"[:253], "labels": dict(MANAGED_BY)},
                    "spec": {"blocks": [{"start": ip, "stop": ip}], "allowFirstLastIPs": "Yes",
                             "serviceSelector": {"matchLabels": {SVC_NS_LABEL: ns, SVC_NAME_LABEL: name}}}})
    return out


def pool_addresses(pools: list[dict[str, Any]]) -> set[str]:
    """Every address the pools' blocks hold (start/stop ranges and CIDRs)."""
    out: set[str] = set()
    for p in pools:
        for b in (p.get("spec") or {}).get("blocks") or []:
            if b.get("cidr"):
                out.update(str(a) for a in ipaddress.IPv4Network(b["cidr"], strict=False))
            elif b.get("start"):
                lo = int(ipaddress.IPv4Address(b["start"]))
                hi = int(ipaddress.IPv4Address(b.get("stop") or b["start"]))
                out.update(str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1))
    return out


def l2_policy(spec: LabSpec) -> dict[str, Any]:
    return {"apiVersion": cilium_api(spec.versions.cilium)["l2policy"], "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": {"loadBalancerIPs": True, "externalIPs": bool(spec.cilium.external_ips),
                     "interfaces": list(spec.cilium.interfaces)}}


def service_annotations(spec: LabSpec, namespace: str, name: str) -> dict[str, str | None]:
    """The annotation changes a service needs: Cilium's IP for pinned ones, MetalLB's removed.
    (None removes a key; the seed's ``io.cilium/lb-ipam-ips`` alias is removed in favour of
    ``lbipam.cilium.io/ips``.)"""
    api = cilium_api(spec.versions.cilium)
    sip = design_of(spec).service(namespace, name)
    out: dict[str, str | None] = {k: None for k in METALLB_ANNOTATIONS}
    out[api["annotation_alias"]] = None
    if sip is not None and sip.requested not in ("auto", "disabled"):
        out[api["annotation"]] = sip.requested
    return out
