"""Lab faults (``POST /lab/faults``): one table of kinds, each with its required fields.

===================  ============================  =====================================================
kind                 fields                        effect
===================  ============================  =====================================================
kube_http_error      status (429|500|503|...),     the next ``count`` Kubernetes API requests whose path
                     count=1, path=".*",           matches the regex answer ``status`` (the emulator's
                     method=None                   ``store.faults.fail_next``; 429 carries Retry-After)
kube_api_down        —                             every Kubernetes API request answers 503 until cleared
node_not_ready       node (Node name)              its kubelet stops posting status: Ready=Unknown
diskpool_degraded    pool (DiskPool name)          the Mayastor controller reports the pool Degraded
io_engine_crash      node (Node name)              that node's io-engine pod goes CrashLoopBackOff
talos_apply_error    node (IP), message            ``talos apply`` to that node answers 500 ``message``
corrupt_copy         claim (``ns/name`` of the     the next copy Jobs onto that claim write data whose
                     copy's target PVC, or ``*``)  checksum differs from the source's (falkit.clients.kube.jobs)
storage_link_down    node (Node name)              that node's storage-network NIC has no link: ping
                                                   Jobs over the storage network to/from it fail
                                                   (as ``link_down=1`` on its net1 does)
dhcp_no_reservations —                             the router has no DHCP reservations for the planned
                                                   addresses: a fresh Talos VM gets a pool address
                                                   (falkit.twin.lab.talos.reservations)
argocd_sync_race     app (an Application in        Argo CD's application controller decides auto-sync
                     ``argocd`` whose automated    on its cached copy of the Application: after the
                     sync is on)                   automated policy is turned off (a pause), its next
                                                   drift is still synced once by the policy as it was
                                                   when the fault was injected (falkit.twin.lab.argocd)
===================  ============================  =====================================================

``DELETE /lab/faults`` clears all of them (and the emulator's; the API stays down when the cluster
is not bootstrapped yet), including a ``corrupt_copy`` set directly in the lab state
(``ctx.extra["faults"]``, as older tests and snapshots do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falkit.model.errors import TwinError

from .context import LabContext


class FaultSpecError(TwinError, ValueError):
    """A fault request with an unknown kind or missing/invalid fields (HTTP 400)."""


def _need(spec: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if spec.get(n) in (None, "")]
    if missing:
        raise FaultSpecError(f"fault {spec.get('kind')!r} needs {', '.join(missing)}")
    return [spec[n] for n in names]


def _kube_http(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    (status,) = _need(spec, "status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultSpecError(f"kube_http_error status must be an HTTP error code, not {status!r}")
    count = int(spec.get("count", 1))
    path = str(spec.get("path", ".*"))
    ctx.store.faults.fail_next(count, status=status, path=path, method=spec.get("method"),
                               retry_after=spec.get("retry_after"))
    rec = {"kind": "kube_http_error", "status": status, "count": count, "path": path}
    ctx.faults.kube_http.append(rec)
    return rec


def _kube_down(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    ctx.store.faults.api_down()
    rec = {"kind": "kube_api_down"}
    ctx.faults.kube_http.append(rec)
    return rec


def _set_member(attr: str, field: str) -> Callable[[LabContext, dict[str, Any]], dict[str, Any]]:
    def inject(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
        (value,) = _need(spec, field)
        getattr(ctx.faults, attr).add(str(value))
        return {"kind": spec["kind"], field: value}
    return inject


def _talos_apply(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    node, message = _need(spec, "node", "message")
    ctx.faults.talos_apply_error[str(node)] = str(message)
    return {"kind": "talos_apply_error", "node": node, "message": message}


def _corrupt_copy(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    (claim,) = _need(spec, "claim")
    claim = str(claim)
    if claim != "*" and claim.count("/") != 1:
        raise FaultSpecError(f"corrupt_copy claim must be 'namespace/name' or '*', not {claim!r}")
    ctx.faults.corrupt_copy.add(claim)
    return {"kind": "corrupt_copy", "claim": claim}


def _argocd_sync_race(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Freeze the controller's copy of ``app``'s automated policy as it is now (see falkit.twin.lab.argocd)."""
    (app,) = _need(spec, "app")
    try:
        obj = ctx.store.get("argoproj.io/v1alpha1", "Application", str(app), "argocd")
    except Exception as e:  # noqa: BLE001 - ApiError 404 or the CRD not served
        raise FaultSpecError(f"argocd_sync_race: no Application {app!r} in namespace argocd ({e})") from e
    auto = ((obj.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    if auto is None or auto.get("enabled", True) is False:
        raise FaultSpecError(f"argocd_sync_race: Application {app!r} has no automated sync policy to race")
    ctx.faults.argocd_sync_race[str(app)] = dict(auto)
    return {"kind": "argocd_sync_race", "app": str(app), "automated": dict(auto)}


def _dhcp_no_reservations(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    ctx.extra.setdefault("talos", {})["dhcp_no_reservations"] = True
    return {"kind": "dhcp_no_reservations"}


FAULTS: dict[str, Callable[[LabContext, dict[str, Any]], dict[str, Any]]] = {
    "kube_http_error": _kube_http,
    "kube_api_down": _kube_down,
    "node_not_ready": _set_member("node_not_ready", "node"),
    "diskpool_degraded": _set_member("diskpool_degraded", "pool"),
    "io_engine_crash": _set_member("io_engine_crash", "node"),
    "talos_apply_error": _talos_apply,
    "dhcp_no_reservations": _dhcp_no_reservations,
    "corrupt_copy": _corrupt_copy,
    "storage_link_down": _set_member("storage_link_down", "node"),
    "argocd_sync_race": _argocd_sync_race,
}


def inject(ctx: LabContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply one fault; returns what was recorded. Controllers see it on their next pass."""
    kind = spec.get("kind")
    if kind not in FAULTS:
        raise FaultSpecError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(FAULTS))})")
    rec = FAULTS[kind](ctx, spec)
    ctx.notify()
    return rec


def clear(ctx: LabContext) -> int:
    """Undo every fault; returns how many lab faults there were."""
    data = ctx.faults.to_json()
    n = sum(len(v) for v in data.values())
    ctx.faults.clear()
    n += int(bool((ctx.extra.get("talos") or {}).pop("dhcp_no_reservations", False)))
    n += len(ctx.extra.pop("faults", None) or {})  # lab-state faults (corrupt_copy set in ctx.extra)
    ctx.store.faults.clear()
    if not ctx.bootstrapped:
        ctx.store.faults.api_down()  # no cluster yet: the API stays unavailable
    ctx.notify()
    return n


def state(ctx: LabContext) -> dict[str, Any]:
    return {**ctx.faults.to_json(), "kube_api_down": bool(ctx.store.faults.down) and ctx.bootstrapped,
            "dhcp_no_reservations": bool((ctx.extra.get("talos") or {}).get("dhcp_no_reservations")),
            "kube_rules": [{"status": r.status, "remaining": r.remaining, "path": r.path.pattern}
                           for r in list(ctx.store.faults.rules)]}
