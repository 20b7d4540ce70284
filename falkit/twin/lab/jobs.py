"""The twin's Job controller: copy, checksum, write, fio and ping Jobs, and the pod logs they leave.

:func:`workloads.reconcile <falkit.twin.lab.workloads.reconcile>` runs :func:`reconcile_job` for every
Job (one Pod ``<job>-<5 chars>`` with the ``job-name`` labels, via :mod:`.pods`), writes the
log :func:`job_log` returns and marks the Job Complete or Failed.

Job contract (the live lab runs the *same* Job specs with real containers; the twin writes the
log those commands print). ``job_manifest(kind, ...)`` builds them:

=============  ============================================  ===========================================
kind (label    annotations                                   pod log
falkit.io/job)
=============  ============================================  ===========================================
fio            label ``app.kubernetes.io/name: falkit-fio``,  fio JSON (``falkit.bench.fio.k8s_job_manifest``);
               ``falkit.io/fio-jobs``, ``falkit.io/bench-``   the twin's is ``falkit.twin.lab.perf.
               ``target``                                     fio_output`` (``falkit_modelled``)
copy           ``falkit.io/source-pvc``, ``falkit.io/target``  ``copied N bytes``
               ``-pvc`` (same namespace)
checksum       ``falkit.io/pvc``                              ``sha256  <hex>`` (sha256 over the sorted
                                                              per-file sha256sum lines)
write          ``falkit.io/pvc``, ``falkit.io/bytes``         ``wrote N bytes`` (fresh random data)
ping           ``falkit.io/targets`` (comma-separated IPs);    one JSON line ``{"node", "results":
               ``spec.nodeName``, hostNetwork                  [{"target", "reachable"}]}``
=============  ============================================  ===========================================

The twin's data model is ``ctx.volumes`` (one checksum per PV); the fault ``corrupt_copy`` (a set of
target PVC names ``ns/name``, or ``*``) makes a copy's checksum differ from its source. Ping
reachability: the source node's Talos addresses and the target share a subnet whose Proxmox bridge
exists on the host and both VMs have a NIC with link on (not ``link_down=1``; the lab fault
``storage_link_down`` cuts a node's storage NIC), and the target address is configured on a Talos node or a running VM of
the spec (TrueNAS, Plex). A modelled log is never a measurement.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any

from falkit.twin.kube.objects import now_iso

from .context import VolumeData
from .mayastor import core_list, release
from .perf import Storage, fio_output
from .pods import (
    LONGHORN_DRIVER,
    MAYASTOR_DRIVER,
    ensure_pods,
    pod_state,
    pvc_names,
    quantity_bytes,
    record_event,
    set_condition,
    suffix,
    write_status,
)

IMAGES = {"copy": "busybox:1.37", "checksum": "busybox:1.37", "write": "busybox:1.37", "ping": "alpine:3.21"}
COMMANDS = {
    "copy": 'cp -a /src/. /dst/ && sync && echo "copied $(du -sb /dst | cut -f1) bytes"',
    "checksum": "printf 'sha256  %s\\n' \"$(cd /data && find . -type f -print0 | sort -z | xargs -0 sha256sum"
                " | sha256sum | cut -d' ' -f1)\"",
    "write": 'head -c "$FALKIT_BYTES" /dev/urandom > /data/falkit-data.bin && sync && echo "wrote $FALKIT_BYTES bytes"',
    "ping": 'printf \'{"node":"%s","results":[\' "$NODE_NAME"; sep=""; for t in $(echo "$FALKIT_TARGETS" | tr , " ");'
            ' do if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then r=true; else r=false; fi;'
            ' printf \'%s{"target":"%s","reachable":%s}\' "$sep" "$t" "$r"; sep=","; done; echo "]}"',
}


class JobError(RuntimeError):
    """The job's container would fail; the message is its log."""


def job_manifest(kind: str, name: str, namespace: str, *, pvc: str | None = None, source_pvc: str | None = None,
                 target_pvc: str | None = None, nbytes: int = 64 * 1024 * 1024, node: str | None = None,
                 targets: list[str] | None = None) -> dict:
    """A ``batch/v1`` Job of the contract above (copy | checksum | write | ping) for the live lab and
    the twin alike: the container's command prints exactly the log format the twin writes."""
    ann: dict[str, str] = {}
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    mounts, vols = [], []
    if kind == "copy":
        ann = {"falkit.io/source-pvc": source_pvc or "", "falkit.io/target-pvc": target_pvc or ""}
        for vname, claim, path in (("src", source_pvc, "/src"), ("dst", target_pvc, "/dst")):
            mounts.append({"name": vname, "mountPath": path})
            vols.append({"name": vname, "persistentVolumeClaim": {"claimName": claim}})
    elif kind in ("checksum", "write"):
        ann = {"falkit.io/pvc": pvc or ""}
        mounts.append({"name": "data", "mountPath": "/data"})
        vols.append({"name": "data", "persistentVolumeClaim": {"claimName": pvc}})
        if kind == "write":
            ann["falkit.io/bytes"] = str(nbytes)
            env.append({"name": "FALKIT_BYTES", "value": str(nbytes)})
    elif kind == "ping":
        ann = {"falkit.io/targets": ",".join(targets or [])}
        env.append({"name": "FALKIT_TARGETS", "value": ann["falkit.io/targets"]})
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    labels = {"falkit.io/job": kind, "app.kubernetes.io/managed-by": "falkit"}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [
        {"name": kind, "image": IMAGES[kind], "command": ["/bin/sh", "-c", COMMANDS[kind]], "env": env,
         "volumeMounts": mounts}], "volumes": vols}
    if node:
        pod_spec["nodeName"] = node
    if kind == "ping":
        pod_spec["hostNetwork"] = True
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": ann},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": dict(labels), "annotations": dict(ann)},
                                                      "spec": pod_spec}}}


def _meta(job: dict, key: str) -> dict:
    tpl = ((job["spec"].get("template") or {}).get("metadata") or {}).get(key) or {}
    return {**tpl, **(job["metadata"].get(key) or {})}


def volume_of(ctx, namespace: str, claim: str):  # noqa: ANN201 - VolumeData | None
    """The twin's data of the PV bound to ``namespace/claim`` (created empty on first use)."""
    pvc = ctx.store.try_get("v1", "PersistentVolumeClaim", claim, namespace)
    pv_name = ((pvc or {}).get("spec") or {}).get("volumeName")
    if not pv_name:
        return None
    vol = ctx.volumes.get(pv_name)
    if vol is None:
        pv = ctx.store.try_get("v1", "PersistentVolume", pv_name) or {"spec": {}}
        vol = VolumeData(pv_name, namespace, claim, (pv["spec"].get("csi") or {}).get("driver", ""),
                         quantity_bytes(((pv["spec"].get("capacity") or {}).get("storage")) or "0"))
        ctx.volumes[pv_name] = vol
    return vol


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _fio_log(ctx, job: dict, ns: str) -> str:
    """fio's JSON for the job file the pod runs, on the storage the claim is bound to (:mod:`.perf`)."""
    ann, labels = _meta(job, "annotations"), _meta(job, "labels")
    spec = ctx.spec
    pod_spec = (job["spec"].get("template") or {}).get("spec") or {}
    env = {e.get("name"): e.get("value") for c in pod_spec.get("containers") or [] for e in c.get("env") or []}
    if not env.get("FALKIT_FIO_JOBFILE"):
        raise JobError("fio: no job file given\n")
    claims = pvc_names(pod_spec)
    vol = volume_of(ctx, ns, claims[0]) if claims else None
    driver = vol.driver if vol is not None else ""
    engine = {MAYASTOR_DRIVER: "mayastor", LONGHORN_DRIVER: "longhorn"}.get(driver, "local")
    storage_name = spec.cluster.vm_defaults.os_storage if engine == "local" else spec.cluster.vm_defaults.data_storage
    dev = (spec.storage(storage_name) or spec.storage(spec.cluster.vm_defaults.data_storage)).device
    replicas = len(vol.replicas) if vol is not None and vol.replicas else 1
    disks = {(spec.storage(spec.cluster.vm_defaults.data_storage).device.physical_disk, w.node or spec.host.node)
             for w in spec.cluster.workers}
    rel = release(ctx) if engine == "mayastor" else None
    cores = len(core_list(rel)) if rel is not None else 1
    st = Storage(engine, dev.seq_read_mb_s, dev.seq_write_mb_s, dev.rand_read_iops, dev.rand_write_iops,
                 dev.latency_ms, replicas=replicas, shared_disk=len(disks) == 1, cores=max(1, cores))
    text = fio_output(env["FALKIT_FIO_JOBFILE"], st, target_label=labels.get("falkit.io/bench-target"))
    if vol is not None:  # fio lays out and writes its test file
        vol.used_bytes = max(vol.used_bytes, int(ann.get("falkit.io/fio-size-mib", "64")) * 2**20)
        vol.checksum = hashlib.sha256(f"{vol.checksum}fio{job['metadata']['uid']}".encode()).hexdigest()
    return text


def _corrupt(ctx, ns: str, claim: str) -> bool:
    sel = set(getattr(ctx.faults, "corrupt_copy", ()) or ()) | set(ctx.extra.get("faults", {}).get("corrupt_copy", ()))
    return "*" in sel or f"{ns}/{claim}" in sel


def _vm_index(ctx, vms) -> dict[str, Any]:
    """IP -> (vm, network cidr) for every address the spec gives a running VM/CT or a Talos node has."""
    out: dict[str, Any] = {}
    by_id = {v.vmid: v for v in vms or []}
    for tn in ctx.talos_nodes.values():
        for ip in tn.ips:
            out[ip] = by_id.get(tn.vmid)
    for extra in (ctx.spec.truenas, ctx.spec.plex):
        if extra is not None and extra.enabled:
            for ip in (extra.ip, getattr(extra, "storage_ip", None)):
                if ip:
                    out.setdefault(ip, by_id.get(extra.vmid))
    return out


def _networks(ctx) -> list[tuple[ipaddress.IPv4Network, str]]:
    nets = [(ipaddress.ip_network(n.cidr), n.bridge) for n in (ctx.spec.networks.management, ctx.spec.networks.storage)]
    if ctx.spec.previous and ctx.spec.previous.network:
        nets.append((ipaddress.ip_network(ctx.spec.previous.network.cidr), ctx.spec.previous.network.bridge))
    return nets


def _ping_log(ctx, job: dict, pod: dict, vms, bridges=None) -> str:
    """Each target is reachable when source and target VM have a NIC with link on the subnet's
    bridge, the bridge exists on the host, and neither end's storage NIC is down by the
    ``storage_link_down`` fault. ``link_down=1`` is qemu-server's "disconnected (like pulling the
    plug)" (PVE/QemuServer.pm, netdesc); a guest NIC on a bridge that is gone has no peer either
    (and no VM starts with one: pve-common PVE/Network.pm ``bridge '%s' does not exist``)."""
    node = pod["spec"].get("nodeName") or ""
    src = ctx.node_by_hostname(node)
    index = _vm_index(ctx, vms)
    storage_bridge = ctx.spec.networks.storage.bridge
    cut = set(ctx.faults.storage_link_down)
    by_ip = {ip: tn.hostname for tn in ctx.talos_nodes.values() for ip in tn.ips}
    results = []
    for t in [x.strip() for x in (_meta(job, "annotations").get("falkit.io/targets") or "").split(",") if x.strip()]:
        ok = False
        for net, bridge in _networks(ctx):
            if src is None or ipaddress.ip_address(t) not in net:
                continue
            mine = [ip for ip in src.ips if ipaddress.ip_address(ip) in net]
            src_vm, dst_vm = index.get(src.ip), index.get(t)
            ok = bool(mine) and t in index and (
                vms is None or (src_vm is not None and dst_vm is not None and dst_vm.running
                                and bridge in src_vm.bridges_up() and bridge in dst_vm.bridges_up()
                                and (bridges is None or bridge in bridges)))
            if bridge == storage_bridge and (node in cut or by_ip.get(t) in cut):
                ok = False
        results.append({"target": t, "reachable": ok})
    return json.dumps({"node": node, "results": results}, separators=(",", ":")) + "\n"


def job_log(ctx, job: dict, pod: dict, vms=None, bridges=None) -> str:
    """What the job's container prints (see the module docstring); JobError if it would fail."""
    ns = job["metadata"]["namespace"]
    labels, ann = _meta(job, "labels"), _meta(job, "annotations")
    if labels.get("app.kubernetes.io/name") == "falkit-fio":
        return _fio_log(ctx, job, ns)
    kind = labels.get("falkit.io/job")
    if kind == "copy":
        src = volume_of(ctx, ns, ann.get("falkit.io/source-pvc", ""))
        dst = volume_of(ctx, ns, ann.get("falkit.io/target-pvc", ""))
        if src is None or dst is None:
            raise JobError("cp: can't stat '/src/.': No such file or directory\n")
        dst.checksum = src.checksum
        if _corrupt(ctx, ns, ann.get("falkit.io/target-pvc", "")):
            dst.checksum = hashlib.sha256(f"corrupt:{src.checksum}".encode()).hexdigest()
        dst.used_bytes = src.used_bytes
        return f"copied {src.used_bytes} bytes\n"
    if kind in ("checksum", "write"):
        vol = volume_of(ctx, ns, ann.get("falkit.io/pvc", ""))
        if vol is None:
            raise JobError("/data: No such file or directory\n")
        if kind == "checksum":
            return f"sha256  {vol.checksum or EMPTY_SHA256}\n"
        n = int(ann.get("falkit.io/bytes") or 64 * 2**20)
        vol.used_bytes = max(vol.used_bytes, n)
        vol.checksum = hashlib.sha256(f"write:{job['metadata']['uid']}:{n}".encode()).hexdigest()
        return f"wrote {n} bytes\n"
    if kind == "ping":
        return _ping_log(ctx, job, pod, vms, bridges)
    return ""


def reconcile_job(ctx, job: dict, counts: dict, nnodes: int, vms, bridges=None) -> None:
    md = job["metadata"]
    jst = job.get("status") or {}
    if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in jst.get("conditions") or []):
        return
    uid = md["uid"]
    labels = {"batch.kubernetes.io/job-name": md["name"], "job-name": md["name"],
              "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    pod = ensure_pods(ctx, job, [(f"{md['name']}-{suffix(uid)}", labels, None)], counts)[0]
    st, evs = pod_state(ctx, pod, nnodes)
    for reason, msg, etype in evs:
        record_event(ctx, pod, reason, msg, etype, "default-scheduler" if reason == "FailedScheduling" else "kubelet")
    start = jst.get("startTime") or now_iso()
    if st.get("hostIP") is None or "containerStatuses" in st:
        write_status(ctx, pod, st)
        write_status(ctx, job, {"active": 1, "ready": 0, "startTime": start, "terminating": 0}, "job-controller")
        return
    ok, code = True, 0
    try:
        text = job_log(ctx, job, pod, vms, bridges)
    except JobError as e:
        ok, code, text = False, 1, str(e)
    ctx.store.set_pod_log(md["namespace"], pod["metadata"]["name"], text)
    done = now_iso()
    st.update(phase="Succeeded" if ok else "Failed", startTime=start)
    st["containerStatuses"] = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                "restartCount": 0, "started": False,
                                "state": {"terminated": {"exitCode": code, "reason": "Completed" if ok else "Error",
                                                         "startedAt": start, "finishedAt": done}}}
                               for c in pod["spec"].get("containers") or []]
    write_status(ctx, pod, st)
    conds = jst.get("conditions") or []
    if ok:
        conds = set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached",
                              "Reached expected number of succeeded pods")
        conds = set_condition(conds, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")
        write_status(ctx, job, {"succeeded": 1, "ready": 0, "terminating": 0, "startTime": start,
                                "completionTime": done, "conditions": conds,
                                "uncountedTerminatedPods": {}}, "job-controller")
    else:
        conds = set_condition(conds, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        conds = set_condition(conds, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        write_status(ctx, job, {"failed": 1, "ready": 0, "terminating": 0, "startTime": start, "conditions": conds,
                                "uncountedTerminatedPods": {}}, "job-controller")
