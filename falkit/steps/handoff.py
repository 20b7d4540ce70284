"""The operator hand-off: the seed's manual post-migration tasks ("DNS/DHCP Updates") as tables
and CSV files, generated from the design (and, when given, what the cluster reports).

- **DHCP reservations** (:func:`dhcp_rows`): hostname, MAC, IP for every NIC of every VM and of
  the Plex container, exactly as :func:`falkit.model.design.derive_design` assigns them (the seed fixes MACs
  so that a reservation gives each machine its planned address; docs/FACTS.md "Not yet checked").
- **DNS records** (:func:`dns_rows`): an A record per service with ``dns`` in the spec, to its new IP
  — the Service's observed LoadBalancer IP when ``observed`` has it, else the planned one (an
  ``auto`` service's planned IP is the pool's lowest free address, which Cilium also picks); a
  ``disabled`` service's record is to be deleted.
- **Cloudflare tunnel endpoints** (:func:`tunnel_rows`): for services with ``tunnel: true`` whose
  address changes, the origin ``https://<old IP>`` -> ``https://<new IP>``.
- **Plex** (issue 14): Plex leaves Kubernetes for its LXC container, so each table names the
  container: its DHCP reservations (kind ``lxc``, its vmid), an A record ``<plex hostname>.<domain>``
  -> the container's IP (the domain of the spec's other DNS names; source ``plex container``), and a
  tunnel origin ``http://<container IP>:32400`` (Plex serves plain HTTP on 32400; the Kubernetes
  Plex had no LoadBalancer address of its own in the seed, so the old origin is named, not an IP).

:func:`write_handoff` writes ``handoff/dhcp.csv``, ``dns.csv`` and ``tunnel.csv`` into a directory
(default ``$FALKIT_RUN_DIR``, the run archive). The validation notebook shows the three tables
with ``lab.handoff()`` (:func:`falkit.runbook.display.show_handoff`, which also writes the CSVs when a run
directory is set).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ..clients.kube import kget
from ..model.design import LabDesign, design_of
from ..model.spec import LabSpec

DHCP_COLUMNS = ("hostname", "mac", "ip", "network", "bridge", "kind", "vmid")
DNS_COLUMNS = ("name", "type", "value", "old_value", "action", "source", "service")
TUNNEL_COLUMNS = ("hostname", "service", "old_origin", "new_origin")


def dhcp_rows(spec: LabSpec, design: LabDesign | None = None) -> list[dict[str, Any]]:
    """One reservation per NIC of every VM and container of the design (NICs without a MAC — the
    scheme cannot encode them, a finding says so — are listed with an empty MAC)."""
    design = design or design_of(spec)
    rows = []
    for vm in design.vms:
        for nic in vm.nics:
            rows.append({"hostname": vm.name, "mac": nic.mac or "", "ip": nic.ip, "network": nic.network,
                         "bridge": nic.bridge, "kind": "qemu", "vmid": vm.vmid})
    for ct in design.containers:
        for nic in ct.nics:
            rows.append({"hostname": ct.hostname, "mac": nic.mac or "", "ip": nic.ip, "network": nic.network,
                         "bridge": nic.bridge, "kind": "lxc", "vmid": ct.vmid})
    return rows


def dns_rows(spec: LabSpec, design: LabDesign | None = None,
             observed: dict[tuple[str, str], str | None] | None = None) -> list[dict[str, Any]]:
    """An A record per service with ``dns`` (``observed``: (namespace, name) -> LB IP or None)."""
    design = design or design_of(spec)
    observed = observed or {}
    planned = {(s.namespace, s.name): s for s in design.services}
    rows = []
    for s in spec.services:
        if not s.dns:
            continue
        p = planned[(s.namespace, s.name)]
        seen = observed.get((s.namespace, s.name))
        if s.new_ip == "disabled":
            rows.append({"name": s.dns, "type": "A", "value": "", "old_value": s.old_ip or "", "action": "delete",
                         "source": "spec (disabled)", "service": f"{s.namespace}/{s.name}"})
            continue
        value = seen or p.ip or ""
        rows.append({"name": s.dns, "type": "A", "value": value, "old_value": s.old_ip or "",
                     "action": "keep" if value == s.old_ip else "update",
                     "source": "observed" if seen else "planned", "service": f"{s.namespace}/{s.name}"})
    if (row := plex_dns_row(spec, design)) is not None:
        rows.append(row)
    return rows


def plex_dns_row(spec: LabSpec, design: LabDesign | None = None) -> dict[str, Any] | None:
    """The A record of Plex's container (None when Plex is disabled or no DNS domain is known)."""
    p = spec.plex
    if p is None or not p.enabled:
        return None
    domains = [s.dns.split(".", 1)[1] for s in spec.services if s.dns and "." in s.dns]
    if not domains:
        return None
    ct = next((c for c in (design or design_of(spec)).containers if c.vmid == p.vmid), None)
    ip = next((n.ip for n in ct.nics if n.network == "management"), p.ip) if ct else p.ip
    return {"name": f"{p.hostname}.{domains[0]}", "type": "A", "value": ip, "old_value": "",
            "action": "create", "source": "plex container", "service": f"lxc/{p.vmid} ({p.hostname})"}


def tunnel_rows(spec: LabSpec, design: LabDesign | None = None,
                observed: dict[tuple[str, str], str | None] | None = None) -> list[dict[str, Any]]:
    """The tunnel origins that change (services with ``tunnel: true``)."""
    rows = []
    for r in dns_rows(spec, design, observed):
        if r["source"] == "plex container":
            rows.append({"hostname": r["name"], "service": r["service"], "old_origin": "the Kubernetes Plex",
                         "new_origin": f"http://{r['value']}:32400"})
            continue
        ns, name = r["service"].split("/", 1)
        svc = next(s for s in spec.services if s.namespace == ns and s.name == name)
        if not svc.tunnel or r["action"] == "keep":
            continue
        rows.append({"hostname": r["name"], "service": r["service"],
                     "old_origin": f"https://{r['old_value']}" if r["old_value"] else "",
                     "new_origin": f"https://{r['value']}" if r["value"] else "(removed)"})
    return rows


def observe_service_ips(api: Any, spec: LabSpec) -> dict[tuple[str, str], str | None]:
    """(namespace, name) -> the Service's LoadBalancer IP (None when it has none or is missing)."""
    out: dict[tuple[str, str], str | None] = {}
    for s in spec.services:
        svc = kget(api, "v1", "Service", s.name, s.namespace)
        ing = (((svc or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        out[(s.namespace, s.name)] = ing[0].get("ip") if ing else None
    return out


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def write_handoff(directory: str | os.PathLike | None, spec: LabSpec,
                  observed: dict[tuple[str, str], str | None] | None = None) -> dict[str, Path]:
    """Write ``<directory>/handoff/{dhcp,dns,tunnel}.csv``; ``directory`` None = ``$FALKIT_RUN_DIR``
    (``ValueError`` when neither is set). Returns the paths by table name."""
    base = directory if directory is not None else os.environ.get("FALKIT_RUN_DIR")
    if not base:
        raise ValueError("no directory for the hand-off: pass one or set FALKIT_RUN_DIR")
    out = Path(base) / "handoff"
    out.mkdir(parents=True, exist_ok=True)
    design = design_of(spec)
    return {"dhcp": _write_csv(out / "dhcp.csv", DHCP_COLUMNS, dhcp_rows(spec, design)),
            "dns": _write_csv(out / "dns.csv", DNS_COLUMNS, dns_rows(spec, design, observed)),
            "tunnel": _write_csv(out / "tunnel.csv", TUNNEL_COLUMNS, tunnel_rows(spec, design, observed))}

