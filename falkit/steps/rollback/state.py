"""The before-state: :func:`lab_state` (service IPs, mounted claims, checksums),
:func:`record_before_state` and the final step's :func:`before_state_checks`."""

from __future__ import annotations

import json
from typing import Any

from ...jobs import klist
from ...spec import LabSpec
from ...validation import LabState, compare_states, lb_ip
from ..base import Check
from ..volumes import CHECKSUM, MIGRATED_FROM, WORKLOAD_KINDS, claims_in, consumers
from ._common import _ann, _checksum, _key, _md
from .lb import service_ip_checks

BEFORE_FILE = "before-state.json"


def lab_state(target: Any, spec: LabSpec, timeout: float = 300.0) -> LabState:
    """Service IPs, the claims each workload mounts and a checksum (checksum Job) per mounted claim."""
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
    return LabState(services, claims, sums)


def record_before_state(target: Any, spec: LabSpec) -> LabState:
    """Record the before-state (before the migration) in the private dir for the rollback's check."""
    state = lab_state(target, spec)
    target.write_private(BEFORE_FILE, json.dumps(state.to_json(), indent=2, sort_keys=True))
    return state


def before_state_checks(target: Any, spec: LabSpec) -> list[Check]:
    recorded = target.read_private(BEFORE_FILE)
    if recorded:
        before = LabState.from_json(json.loads(recorded))
        now = lab_state(target, spec)
        # only the workloads and services the before-state had; a checksum of a claim now unmounted still counts
        return compare_states(before, now)
    api = target.kube()
    out = service_ip_checks(spec, {_key(s): s for s in klist(api, "v1", "Service")})
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
