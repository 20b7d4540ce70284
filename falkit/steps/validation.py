"""Step 70-validation: every check of the seed's "Validation Steps" and "Monitoring and
Troubleshooting" sections, against the lab (the checks themselves are data: :mod:`falkit.steps.probes`).

- **observe / plan**: nothing to change — the plan is always empty (a note says so). The step is
  checks only.
- **checks** (:meth:`ValidationStep.checks`): gathers :class:`~falkit.steps.probes.ValidationFacts`
  and returns :func:`falkit.steps.probes.all_checks`. Two checks run Jobs, both falkit's own test
  data, and clean up after themselves:

  * **a fresh PVC** ``falkit-validate-<short id>`` (1Gi on ``spec.mayastor.storage_class`` in
    ``default``) is created, waited for ``Bound``, written by a write Job (``falkit.clients.kube.jobs``), then
    the Job and the PVC **it created** are deleted again (never any other claim);
  * **the storage network**: one ping Job per worker in ``kube-system`` (exempt from the PodSecurity
    baseline on Talos, and hostNetwork needs that), ``spec.nodeName`` = the worker, hostNetwork, pinging
    every other worker's storage IP (``10.11.0.x``). The kernel routes those over the storage NIC (the
    connected route of 10.11.0.0/24 on eth1). The Job contract is the twin's
    (``falkit/twin/lab/jobs.py``): label ``falkit.io/job: ping``, annotation
    ``falkit.io/targets``, a one-line JSON log ``{"node", "results": [{"target", "reachable"}]}``.
    On the twin that log is modelled, and the check's observed text says so.

- the storage IP of each worker comes from its Talos machine config (``target.talos``: the config the
  node runs), the management IP from the Node's ``InternalIP``.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import yaml

from ..clients.kube import job_name, kcreate, kdelete, kget, klist, run_job, served, write_job
from ..model.design import design_of
from ..model.schemas import diskpool_api_version
from ..model.spec import LabSpec
from ..plan.diff import Plan
from ..render.mayastorvalues import PROVISIONER
from .base import Check, Progress, StepOptions, register
from .probes import FreshPvc, Ping, ValidationFacts, all_checks, talos_addresses

STEP = "validation"
PING_NS = "kube-system"
PVC_NS = "default"
PING_IMAGE = "alpine:3.21"
# The ping script of the twin's Job contract (falkit/twin/lab/jobs.py): real ping on the live lab.
PING_SH = ('printf \'{"node":"%s","results":[\' "$NODE_NAME"; sep=""; for t in $(echo "$FALKIT_TARGETS" | tr , " ");'
           ' do if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then r=true; else r=false; fi;'
           ' printf \'%s{"target":"%s","reachable":%s}\' "$sep" "$t" "$r"; sep=","; done; echo "]}"')
JOB_TIMEOUT_S = 120.0


def ping_job(name: str, node: str, targets: list[str]) -> dict[str, Any]:
    """A hostNetwork Job on ``node`` pinging ``targets`` once each (see the module docstring)."""
    labels = {"falkit.io/job": "ping", "app.kubernetes.io/managed-by": "falkit"}
    ann = {"falkit.io/targets": ",".join(targets)}
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "FALKIT_TARGETS", "value": ann["falkit.io/targets"]}]
    pod = {"restartPolicy": "Never", "nodeName": node, "hostNetwork": True,
           "tolerations": [{"operator": "Exists"}],
           "containers": [{"name": "ping", "image": PING_IMAGE, "command": ["/bin/sh", "-c", PING_SH], "env": env,
                           "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": PING_NS, "labels": labels, "annotations": ann},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600,
                     "template": {"metadata": {"labels": dict(labels), "annotations": dict(ann)}, "spec": pod}}}


def parse_ping_log(node: str, log: str, modelled: bool) -> Ping:
    """The ping Job's JSON line -> :class:`Ping` (an unreadable log is an error, not a result)."""
    for line in reversed(log.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            return Ping(node, {str(r.get("target")): bool(r.get("reachable")) for r in data["results"]}, modelled)
    return Ping(node, {}, modelled, f"no result in the ping Job's log: {log.strip()[-200:] or '<empty>'}")


# ---------------------------------------------------------------------------------------------
# Gathering the facts


def _talos_docs(target: Any, ip: str) -> list[dict]:
    """The machine config the node at ``ip`` runs, as parsed documents (``talosctl get machineconfig``)."""
    talos = target.talos
    fn = next((getattr(talos, n) for n in ("config", "get_config", "machine_config") if callable(getattr(talos, n, None))),
              None)
    if fn is None:
        raise RuntimeError("the Talos backend has no way to read a node's config")
    got = fn(ip)
    text = got.get("config") if isinstance(got, dict) else got
    return [d for d in yaml.safe_load_all(text or "") if d]


def talos_ips(target: Any, spec: LabSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in spec.cluster.workers:
        try:
            out[w.name] = talos_addresses(_talos_docs(target, w.ip))
        except Exception as e:  # noqa: BLE001 - an unreachable node is a failed check, not a crash
            out[w.name] = f"Talos config not readable: {type(e).__name__}: {e}"
    return out


def _claim_events(api: Any, name: str) -> tuple[str, ...]:
    """The claim's Events, oldest first, as ``"<reason>: <message>"`` (``kubectl describe pvc``'s Events:
    the external provisioner's ExternalProvisioning / ProvisioningFailed words)."""
    try:
        evs = [e for e in klist(api, "v1", "Event", PVC_NS)
               if (e.get("involvedObject") or {}).get("name") == name
               and (e.get("involvedObject") or {}).get("kind") == "PersistentVolumeClaim"]
    except Exception as e:  # noqa: BLE001 - the reason is extra; its absence is said
        return (f"events not readable: {type(e).__name__}: {e}",)
    evs.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    out: list[str] = []
    for e in evs:
        line = f"{e.get('reason')}: {e.get('message')}"
        if line not in out:
            out.append(line)
    return tuple(out[-3:])


def fresh_pvc_test(api: Any, spec: LabSpec, timeout: float = JOB_TIMEOUT_S) -> FreshPvc:
    """Create ``falkit-validate-<id>``, wait for Bound, write to it, delete the Job and the PVC."""
    name = f"falkit-validate-{secrets.token_hex(3)}"
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": PVC_NS, "labels": {"app.kubernetes.io/managed-by": "falkit",
                                                                      "falkit.io/purpose": "validation"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": spec.mayastor.storage_class}}
    phase, written, error = "absent", "", ""
    events: tuple[str, ...] = ()
    job = job_name("write", name)
    try:
        kcreate(api, body)
        start = time.monotonic()
        while True:
            pvc = kget(api, "v1", "PersistentVolumeClaim", name, PVC_NS) or {}
            phase = (pvc.get("status") or {}).get("phase", "absent")
            if phase == "Bound" or time.monotonic() - start > timeout:
                break
            time.sleep(0.1)
        if phase == "Bound":
            written = run_job(api, write_job(job, PVC_NS, name, 16 * 1024 * 1024), timeout).strip()
        else:
            error = f"not Bound after {timeout:g} s"
            events = _claim_events(api, name)
    except Exception as e:  # noqa: BLE001 - reported as the check observation
        error = f"{type(e).__name__}: {e}"
    cleaned = True
    for kind, api_version, obj in (("Job", "batch/v1", job), ("PersistentVolumeClaim", "v1", name)):
        try:
            kdelete(api, api_version, kind, obj, PVC_NS)
        except Exception:  # noqa: BLE001
            cleaned = False
    return FreshPvc(name, phase, written, error, cleaned, events)


def storage_pings(api: Any, spec: LabSpec, modelled: bool, timeout: float = JOB_TIMEOUT_S) -> tuple[Ping, ...]:
    out = []
    workers = design_of(spec).workers
    for w in workers:
        targets = [o.storage_ip for o in workers if o.name != w.name]
        name = job_name("ping", w.name)
        try:
            out.append(parse_ping_log(w.name, run_job(api, ping_job(name, w.name, targets), timeout), modelled))
        except Exception as e:  # noqa: BLE001 - a failed Job is a failed check
            out.append(Ping(w.name, {}, modelled, f"{type(e).__name__}: {e}"))
    return tuple(out)


def _truenas(target: Any, spec: LabSpec) -> dict | None:
    if spec.truenas is None or not spec.truenas.enabled:
        return None
    try:
        nas = target.truenas
        return {"shares": nas.nfs_shares(), "services": [nas.service("nfs")]}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def _plex(target: Any, spec: LabSpec) -> dict | None:
    p = spec.plex
    if p is None or not p.enabled:
        return None
    try:
        ct = target.pve.nodes(target.node).lxc(p.vmid)
        return {"status": ct.status.current.get().get("status", "unknown"), "config": ct.config.get()}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


#: The two active tests write to the lab (a PVC, Jobs): they run only when the operator said apply.
NOT_RUN = "not run: apply=False (this test creates a PVC / Jobs in the lab; run with apply=True)"


def gather(target: Any, spec: LabSpec, options: StepOptions) -> ValidationFacts:
    """Read everything the checks need (and run the fresh-PVC and ping Jobs)."""
    api = target.kube()
    ns = spec.mayastor.namespace
    pools = tuple(klist(api, "cilium.io/v2", "CiliumLoadBalancerIPPool")) or \
        tuple(klist(api, "cilium.io/v2alpha1", "CiliumLoadBalancerIPPool"))
    engine = tuple(p for p in klist(api, "v1", "Pod", ns)
                   if ((p["metadata"].get("labels") or {}).get("app") == "io-engine" or "io-engine" in p["metadata"]["name"]))
    timeout = min(options.wait_timeout_s, JOB_TIMEOUT_S)
    sc = kget(api, "storage.k8s.io/v1", "StorageClass", spec.mayastor.storage_class)
    apps = tuple(klist(api, "argoproj.io/v1alpha1", "Application")) if served(api, "argoproj.io/v1alpha1", "Application") \
        else None
    return ValidationFacts(
        target=target.kind,
        nodes=tuple(klist(api, "v1", "Node")),
        talos_ips=talos_ips(target, spec),
        pods=tuple(klist(api, "v1", "Pod")),
        cilium_daemonset=kget(api, "apps/v1", "DaemonSet", "cilium", "kube-system"),
        cilium_pools=pools,
        l2_policies=tuple(klist(api, "cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy")),
        leases=tuple(klist(api, "coordination.k8s.io/v1", "Lease", "kube-system")),
        services=tuple(klist(api, "v1", "Service")),
        io_engine_pods=engine,
        diskpools=tuple(klist(api, diskpool_api_version(spec.versions.mayastor), "DiskPool", ns)),
        mayastor_volumes=tuple(v for v in klist(api, "v1", "PersistentVolume")
                               if ((v.get("spec") or {}).get("csi") or {}).get("driver") == PROVISIONER),
        storage_class=sc,
        fresh_pvc=(FreshPvc("falkit-validate-*", error=NOT_RUN) if not options.apply else
                   fresh_pvc_test(api, spec, timeout) if sc is not None else FreshPvc("falkit-validate-*", error="no StorageClass")),
        pings=(tuple(Ping(w.name, error=NOT_RUN) for w in spec.cluster.workers) if not options.apply
               else storage_pings(api, spec, target.kind == "twin", timeout)),
        argocd_apps=apps,
        truenas=_truenas(target, spec),
        plex=_plex(target, spec),
    )


@register(STEP)
class ValidationStep:
    """Checks only: the plan is always empty."""

    title = "Validation: the seed's checks, as data"

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> None:
        return None

    def plan(self, spec: LabSpec, observed: Any, options: StepOptions) -> Plan:
        return Plan(STEP, notes=("validation changes nothing; its checks run with lab.checks('validation')",))

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        return None

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        return all_checks(spec, gather(target, spec, options))
