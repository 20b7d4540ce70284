"""Step 10-network: the Proxmox bridges ``vmbr0`` (management) and ``vmbr1`` (storage).

The seed: vmbr0 on 10.10.0.0/24 with gateway 10.10.0.1 on the 2.5 GbE port; "Create ``vmbr1``
bridge for storage network — assign physical interface or VLAN — configure 10.11.0.0/24".

- **observe** (read-only): ``GET /nodes/{node}/network``. PVE lists the staged configuration
  (``/etc/network/interfaces.new``) when there is one; an interface without ``active`` is staged but
  not applied.
- **plan** (pure): per bridge and field (ports, address, gateway, autostart) a change; a bridge that
  matches but is only staged gets the reload alone. Every plan that changes anything ends with one
  ``network reload`` action. Changing vmbr0's address, ports or gateway is **disruptive**: the
  operator reaches the host through it.
- **apply**: ``POST /nodes/{node}/network`` (create) or ``PUT …/network/{iface}`` (update) stage the
  changes, then ``PUT /nodes/{node}/network`` reloads them (a ``srvreload`` task, waited for)
  (docs/FACTS.md, Proxmox VE API). Each change carries a typed payload (:class:`StageBridge`: the
  parameters planned for the bridge; :class:`ReloadNetwork`); apply executes them in order and reads
  no spec.
- **checks**: each bridge active with the planned ports and address, nothing left staged.

The host's own addresses are not in the seed. falkit keeps vmbr0's address when it already lies in
the management subnet, otherwise it keeps the host octet and moves it into that subnet
(10.30.0.2 -> 10.10.0.2). On a host-internal vmbr1 (``bridge_ports: ''``) the host is the storage
network's only router, so it takes the seed's storage gateway (10.11.0.1); with a physical port it
takes the same host octet as on vmbr0. vmbr1 never gets a ``gateway`` line: PVE allows one default
gateway per host ("Default gateway already exists on interface 'vmbr0'."). Options
``extra["host_ip"]`` / ``extra["storage_host_ip"]`` override both.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, wait_task
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import payload
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes, executes_together

STEP = "network"
FIELDS = ("bridge_ports", "cidr", "gateway", "autostart")


@payload
@dataclass(frozen=True)
class StageBridge:
    """Stage bridge ``iface``: ``POST /nodes/{node}/network`` with ``params`` (``create``), or
    ``PUT …/network/{iface}`` with ``params`` and the keys to ``delete``. The changes of one bridge
    (one per field) carry the same payload and are staged with one call."""

    iface: str
    params: dict
    create: bool = False
    delete: tuple[str, ...] = ()


@payload
@dataclass(frozen=True)
class ReloadNetwork:
    """``PUT /nodes/{node}/network``: apply the staged changes (a task, waited for)."""


@dataclass(frozen=True)
class NetworkFacts:
    """What ``GET /nodes/{node}/network`` said: iface -> its properties (``active`` when applied)."""

    node: str
    interfaces: dict[str, dict[str, Any]]


def _cidr_of(iface: dict[str, Any]) -> str:
    if iface.get("cidr"):
        return str(iface["cidr"])
    if iface.get("address") and iface.get("netmask"):
        mask = str(iface["netmask"])
        prefix = mask if mask.isdigit() else str(ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen)
        return f"{iface['address']}/{prefix}"
    return ""


def current(iface: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of an observed interface, normalised (ports '' when none, autostart 0/1)."""
    return {"bridge_ports": str(iface.get("bridge_ports") or ""), "cidr": _cidr_of(iface),
            "gateway": str(iface.get("gateway") or ""), "autostart": 1 if str(iface.get("autostart", 0)) in ("1", "True", "true") else 0}


def _host_octet_ip(cidr: str, current_cidr: str) -> str:
    """The address with ``current_cidr``'s host part inside network ``cidr`` (or .2 if none)."""
    net = ipaddress.IPv4Network(cidr)
    host = 2
    if current_cidr:
        old = ipaddress.IPv4Interface(current_cidr)
        host = int(old.ip) - int(old.network.network_address)
    return str(ipaddress.IPv4Address(int(net.network_address) + host))


def desired(spec: LabSpec, facts: NetworkFacts, options: StepOptions) -> dict[str, dict[str, Any]]:
    """The bridges as they should be: iface -> compared fields (see the module docstring for addresses)."""
    mgmt, stor = spec.networks.management, spec.networks.storage
    m_net = ipaddress.IPv4Network(mgmt.cidr)
    have0 = current(facts.interfaces.get(mgmt.bridge, {}))["cidr"]
    if options.extra.get("host_ip"):
        host0 = str(options.extra["host_ip"])
    elif have0 and ipaddress.IPv4Interface(have0).ip in m_net:
        host0 = str(ipaddress.IPv4Interface(have0).ip)
    else:
        host0 = _host_octet_ip(mgmt.cidr, have0)
    s_net = ipaddress.IPv4Network(stor.cidr)
    have1 = current(facts.interfaces.get(stor.bridge, {}))["cidr"]
    if options.extra.get("storage_host_ip"):
        host1 = str(options.extra["storage_host_ip"])
    elif have1 and ipaddress.IPv4Interface(have1).ip in s_net:
        host1 = str(ipaddress.IPv4Interface(have1).ip)
    elif not stor.bridge_ports:
        host1 = stor.gateway
    else:
        host1 = _host_octet_ip(stor.cidr, f"{host0}/{m_net.prefixlen}")
    return {
        mgmt.bridge: {"bridge_ports": mgmt.bridge_ports, "cidr": f"{host0}/{m_net.prefixlen}",
                      "gateway": mgmt.gateway, "autostart": 1},
        stor.bridge: {"bridge_ports": stor.bridge_ports, "cidr": f"{host1}/{s_net.prefixlen}",
                      "gateway": "", "autostart": 1},
    }


def plan_network(spec: LabSpec, facts: NetworkFacts, options: StepOptions) -> Plan:
    """Pure: the changes that make the bridges match the spec (see the module docstring)."""
    want = desired(spec, facts, options)
    mgmt_bridge = spec.networks.management.bridge
    changes: list[Change] = []
    noops: list[Noop] = []
    staged_only = False
    for name, fields in want.items():
        iface = facts.interfaces.get(name)
        disruptive = name == mgmt_bridge
        why = "the operator reaches the host through this bridge: the connection may drop" if disruptive else ""
        if iface is None:
            changes.append(Change("create", "bridge", name, "", None, _describe(fields),
                                  reason=f"{'management' if disruptive else 'storage'} bridge",
                                  data=StageBridge(name, _params(fields, create=True), create=True)))
            continue
        have = current(iface)
        diff = {k: v for k, v in fields.items() if have[k] != v}
        for key, new in diff.items():
            changes.append(Change("update", "bridge", name, key, have[key] or None, new if new != "" else "(none)",
                                  disruptive=disruptive and key != "autostart", reason=why if key != "autostart" else "",
                                  data=StageBridge(name, _params(fields), delete=tuple(k for k, v in fields.items() if v == ""))))
        if not diff:
            if not iface.get("active"):
                staged_only = True
                noops.append(Noop("bridge", name, "configured as planned, staged but not applied yet"))
            else:
                noops.append(Noop("bridge", name, f"active: ports {have['bridge_ports'] or 'none'}, {have['cidr']}"))
    if changes or staged_only:
        changes.append(Change("action", "network", facts.node, "reload", reason="apply staged changes (PUT /nodes/{node}/network)",
                              disruptive=any(c.disruptive for c in changes), data=ReloadNetwork()))
    return Plan("network", tuple(changes), tuple(noops))


def _describe(fields: dict[str, Any]) -> str:
    return f"ports {fields['bridge_ports'] or 'none'}, {fields['cidr']}" + (f" gw {fields['gateway']}" if fields["gateway"] else "")


def _params(fields: dict[str, Any], create: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if v != "" or (k == "bridge_ports" and create)}
    if create:
        out["type"] = "bridge"
    return out


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads


@executes_together(StageBridge, key=lambda c: c.data.iface)
def _stage_bridge(changes: list[Change], ctx: Apply) -> None:
    """One staging call for the (consecutive) changes of one bridge."""
    c, d = changes[0], changes[0].data
    net = ctx.target.pve.nodes(ctx.target.node).network
    if d.create:
        ctx.progress.log(f"staging bridge {c.name}: {c.new}")
        call(f"stage bridge {c.name}", net.post, iface=d.iface, **d.params)
    else:
        ctx.progress.log(f"staging {c.name}: " + ", ".join(x.describe() for x in changes))
        kwargs = dict(d.params)
        if d.delete:
            kwargs["delete"] = ",".join(d.delete)
        call(f"stage {c.name}", net(d.iface).put, type="bridge", **kwargs)


@executes(ReloadNetwork)
def _reload_network(c: Change, ctx: Apply) -> None:
    bar = ctx.progress.task("network reload", 1)
    upid = call("reload network", ctx.target.pve.nodes(ctx.target.node).network.put)
    wait_task(ctx.target.pve, ctx.target.node, upid, timeout=ctx.timeout)
    bar(1, "applied")


def observe_network(pve: Any, node: str) -> NetworkFacts:
    items = call(f"read network of {node}", pve.nodes(node).network.get)
    return NetworkFacts(node, {i["iface"]: dict(i) for i in items})


@register("network")
class NetworkStep:
    title = "Proxmox bridges vmbr0 and vmbr1"
    options = {"host_ip": (str, ""), "storage_host_ip": (str, "")}  # "" = derived (module docstring)

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> NetworkFacts:
        return observe_network(target.pve, target.node)

    def plan(self, spec: LabSpec, observed: NetworkFacts, options: StepOptions) -> Plan:
        return plan_network(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        try:
            execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)
        except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
            raise StepError(STEP, str(e)) from e

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe_network(target.pve, target.node)
        want = desired(spec, facts, options)
        out = []
        for name, fields in want.items():
            iface = facts.interfaces.get(name)
            have = current(iface) if iface else None
            active = bool(iface and iface.get("active"))
            ok = active and have is not None and all(have[k] == v for k, v in fields.items())
            out.append(Check("bridge active as planned", name, _describe(fields),
                             ("active, " if active else "not active, ") + (_describe(have) if have else "absent"),
                             ok, "" if ok else "re-run 10-network with apply"))
        return out
