"""Step 50-mayastor: OpenEBS Mayastor on the workers — preflight, Helm release, DiskPools,
StorageClass ``mayastor-3`` and a written test volume.

- **observe** (read-only): per worker through Talos (``talosctl read``): ``/proc/meminfo``
  (``HugePages_Total``), ``/proc/modules`` (``nvme_tcp``), ``/proc/cpuinfo`` (vCPUs),
  ``/sys/block/<disk>/size`` (the data disk); the Node's labels; the namespace, the Helm release,
  DiskPools, the StorageClass, the test PVC and io-engine pods.
- **plan** (pure, :func:`plan_mayastor`): a ``preflight`` change per worker that fails the
  preflight (apply refuses it with the fix), node labels ``openebs.io/engine=mayastor``, the
  namespace with its PodSecurity exemption, the Helm release (``falkit.render.mayastorvalues``), one
  DiskPool per worker (``pool-<worker>``), the StorageClass, the test PVC and its write Job.
  A DiskPool whose disk changed is destructive (its replicas go); a StorageClass whose parameters
  drifted is re-created (parameters are immutable).
  Every change carries a typed payload (:mod:`falkit.plan.payloads`): ``KubePatch`` (labels),
  ``KubeCreate``, ``KubeReplace`` (a pool's disk, the StorageClass's parameters), ``HelmRelease``, the
  ``GitChange`` of ``mayastor-app.yaml`` (planned here from the text observe read), and this module's
  waits: ``WaitMayastor`` after the release, ``WaitDiskPools`` after the pools, ``WaitPvcBound``
  before ``WriteTestVolume``.
- **apply**: refuses a plan with a failed preflight, then ``execute`` — exactly those changes in
  order, waiting with live progress for every Mayastor component, each pool ``Online`` with
  capacity, and the test PVC ``Bound`` and written. It reads no spec.
- **checks**: preflight per worker, io-engine Running per worker, pools Online with capacity, the
  StorageClass, the test PVC Bound and its replicas on distinct nodes.

Facts (docs/FACTS.md, OpenEBS Mayastor): per io-engine node 2 GiB of 2 MiB hugepages, ``nvme_tcp``
(the seed's ``nvme-tcp`` is the same module: modprobe treats ``-`` and ``_`` alike, /proc/modules
lists ``nvme_tcp``), dedicated cores that exist on the VM; DiskPool ``openebs.io/v1beta2`` for
Mayastor 2.5-2.8 with exactly one disk; StorageClass parameters are strings.

Option ``extra["disk_by_id"]``: use the stable ``/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-
scsi1`` link (what udev names a Proxmox virtio-scsi disk without a serial) instead of
``spec.mayastor.disk_device``. Off by default: ``talosctl read`` cannot list ``/dev/disk/by-id``,
so falkit cannot check the link exists; check it with ``talosctl ls /dev/disk/by-id`` first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..clients.kube import (
    JobFailedError,
    WaitReporter,
    checksum_job,
    job_name,
    kget,
    klist,
    kpatch,
    kraw_get,
    parse_checksum,
    pod_state,
    run_job,
    write_job,
)
from ..model.design import design_of
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import (
    Blocked,
    GitRepo,
    HelmRelease,
    KubeCreate,
    KubePatch,
    KubeReplace,
    ObjectRef,
    payload,
)
from ..render import mayastorvalues as mv
from ..render.gitops import ARGOCD_NS, Checkout, mayastor_application, new_file_edit
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .ownership import file_change

STEP = "mayastor"
TEST_PVC = "falkit-mayastor-test"
WRITTEN_ANNOTATION = "falkit.io/written-checksum"
QEMU_BY_ID = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-{slot}"


@dataclass(frozen=True)
class NodeFacts:
    """One worker as Talos and Kubernetes report it. ``None`` = could not be read (see ``error``)."""

    name: str
    ip: str
    error: str = ""
    hugepages_total: int | None = None
    nvme_tcp: bool | None = None
    vcpus: int | None = None
    disk: str = ""
    disk_bytes: int | None = None
    labels: dict[str, str] | None = None  # None: no Node object


@dataclass(frozen=True)
class MayastorFacts:
    nodes: tuple[NodeFacts, ...]
    namespace_labels: dict[str, str] | None
    release: dict[str, Any] | None
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    storage_class: dict[str, Any] | None = None
    test_pvc: dict[str, Any] | None = None
    io_engine: dict[str, str] = field(default_factory=dict)  # node -> pod state (pod_state)
    # Argo CD deploys Mayastor when it manages the platform (the seed: "Mayastor will be deployed
    # by ArgoCD"): then falkit writes mayastor-app.yaml into the GitOps checkout instead of
    # installing the chart with Helm. ``gitops_repo`` is the checkout and ``gitops_file`` the file's
    # text now ("" absent): plan makes the edit from them.
    via_argocd: bool = False
    gitops_repo: GitRepo | None = None
    gitops_file: str = ""


# ---------------------------------------------------------------------------------------------
# Payloads of this step (the shared ones: falkit.plan.payloads)


@payload
@dataclass(frozen=True)
class WaitMayastor:
    """Wait until every workload in ``namespace`` is ready, io-engine Running and each of
    ``workers`` Ready."""

    namespace: str
    workers: tuple[str, ...]


@payload
@dataclass(frozen=True)
class WaitDiskPools:
    """Wait until each DiskPool of ``names`` is Online with capacity."""

    api_version: str
    namespace: str
    names: tuple[str, ...]


@payload
@dataclass(frozen=True)
class WaitPvcBound:
    """Wait until PersistentVolumeClaim ``namespace/name`` is Bound."""

    namespace: str
    name: str


@payload
@dataclass(frozen=True)
class WriteTestVolume:
    """Write 16 MiB to claim ``namespace/claim`` with a Job, checksum it with another, and record
    the checksum in the claim's annotation ``falkit.io/written-checksum``."""

    namespace: str
    claim: str


# ---------------------------------------------------------------------------------------------
# Preflight (pure)


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            try:
                out[k.strip()] = int(v.split()[0])
            except (ValueError, IndexError):
                continue
    return out


def has_module(modules_text: str, name: str) -> bool:
    want = name.replace("-", "_")
    return any(line.split()[0] == want for line in modules_text.splitlines() if line.strip())


def data_device(spec: LabSpec, worker: str, options: StepOptions) -> str:
    """The device the worker's DiskPool uses (see ``disk_by_id`` in the module docstring)."""
    if options.extra.get("disk_by_id"):
        vm = design_of(spec).vm(worker)
        slot = next(d.slot for d in vm.disks if d.role == "data")
        return QEMU_BY_ID.format(slot=slot)
    return spec.mayastor.disk_device


def preflight(spec: LabSpec, n: NodeFacts) -> list[Check]:
    """The Mayastor prerequisites on one worker as checks, each with how to fix it."""
    if n.error:
        return [Check("talos reachable", n.name, f"talosctl read on {n.ip}", n.error, False,
                      "run 30-talos first; the worker must be configured and running")]
    need = spec.mayastor.hugepages_2mi
    cores = design_of(spec).io_engine_cores
    out = [
        Check("hugepages", n.name, f">= {max(need, 1024)} x 2 MiB (2 GiB for io-engine)", f"HugePages_Total {n.hugepages_total}",
              (n.hugepages_total or 0) >= max(need, 1024),
              "set mayastor.hugepages_2mi (vm.nr_hugepages) and re-run 30-talos; 2048 leaves slack"),
        Check("kernel module", n.name, "nvme_tcp loaded", "loaded" if n.nvme_tcp else "not in /proc/modules", bool(n.nvme_tcp),
              "add nvme_tcp to talos.kernel_modules and re-run 30-talos (the node reboots)"),
        Check("data disk", n.name, f"{n.disk} present",
              f"{n.disk_bytes / 1e9:.0f} GB" if n.disk_bytes else "absent", bool(n.disk_bytes),
              f"attach the data disk (20-vms) or set mayastor.disk_device; a stable id is "
              f"{QEMU_BY_ID.format(slot='scsi1')}"),
        Check("io-engine cores", n.name, f"cores {','.join(map(str, cores))} exist", f"{n.vcpus} vCPUs",
              n.vcpus is not None and max(cores) < n.vcpus,
              "set mayastor.io_engine_cores to cores the worker has, or give the worker more vCPUs"),
    ]
    return out


# ---------------------------------------------------------------------------------------------
# Plan (pure)


def _pool_state(pool: dict[str, Any]) -> tuple[str, int]:
    st = pool.get("status") or {}
    return str(st.get("pool_status") or st.get("state") or st.get("cr_state") or ""), int(st.get("capacity") or 0)


def plan_mayastor(spec: LabSpec, facts: MayastorFacts, options: StepOptions) -> Plan:
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    ns = spec.mayastor.namespace
    key, val = mv.ENGINE_LABEL
    for n in facts.nodes:
        bad = [c for c in preflight(spec, n) if not c.ok]
        for c in bad:
            changes.append(Change("action", "preflight", n.name, c.check, c.observed, c.expected,
                                  reason=f"blocked: {c.check} — {c.fix}", data=Blocked(f"{c.check} — {c.fix}")))
        if n.labels is None:
            notes.append(f"node {n.name} is not registered in Kubernetes")
        elif n.labels.get(key) != val:
            changes.append(Change("update", "node-label", n.name, key, n.labels.get(key), val,
                                  reason="io-engine's nodeSelector",
                                  data=KubePatch(ObjectRef("v1", "Node", "", n.name), {"metadata": {"labels": {key: val}}})))
        else:
            noops.append(Noop("node-label", n.name, f"{key}={val}"))
    psa_k, psa_v = mv.PSA_LABEL
    if facts.namespace_labels is None:
        changes.append(Change("create", "namespace", ns, new=f"{psa_k}={psa_v}", data=KubeCreate(mv.namespace_object(spec))))
    elif facts.namespace_labels.get(psa_k) != psa_v:
        changes.append(Change("update", "namespace", ns, psa_k, facts.namespace_labels.get(psa_k), psa_v,
                              reason="Talos enforces 'baseline'; io-engine is privileged",
                              data=KubePatch(ObjectRef("v1", "Namespace", "", ns), {"metadata": {"labels": {psa_k: psa_v}}})))
    else:
        noops.append(Noop("namespace", ns, "exists with the PodSecurity exemption"))
    chart, version = mv.chart_ref(spec)
    values = mv.helm_values(spec)
    rel = facts.release
    release = HelmRelease(ns, mv.RELEASE_NAME, chart, version, values, None if rel is None else (rel.get("values") or {}),
                          diff=False)
    if facts.via_argocd:
        git = _gitops_change(spec, facts)
        if git is not None:
            changes.append(git)
        else:
            noops.append(Noop("git-file", "mayastor-app.yaml", f"Argo CD deploys {chart} {version} with falkit's values"))
    elif rel is None:
        changes.append(Change("create", "helm-release", f"{ns}/{mv.RELEASE_NAME}", new=f"{chart} {version}", data=release))
    else:
        diffs = []
        if str(rel.get("version")) != version:
            diffs.append(("version", rel.get("version"), version))
        if (rel.get("values") or {}) != values:
            diffs.append(("values", "(differs)", "falkit values"))
        if rel.get("status") not in (None, "deployed"):
            diffs.append(("status", rel.get("status"), "deployed"))
        for f, old, new in diffs:
            changes.append(Change("update", "helm-release", f"{ns}/{mv.RELEASE_NAME}", f, old, new,
                                  data=replace(release, diff=True) if f == "values" else release))
        if not diffs:
            noops.append(Noop("helm-release", f"{ns}/{mv.RELEASE_NAME}", f"{chart} {version} deployed"))
    installed = len(changes)  # the components wait goes here (after the release, before the pools)
    pools: list[str] = []
    for n in facts.nodes:
        want = mv.diskpool(spec, n.name, data_device(spec, n.name, options))
        have = facts.pools.get(want["metadata"]["name"])
        if have is None:
            changes.append(Change("create", "diskpool", want["metadata"]["name"], new=f"{n.name}:{want['spec']['disks'][0]}",
                                  data=KubeCreate(want)))
            pools.append(want["metadata"]["name"])
        elif list((have.get("spec") or {}).get("disks") or []) != want["spec"]["disks"] \
                or (have.get("spec") or {}).get("node") != n.name:
            changes.append(Change("update", "diskpool", want["metadata"]["name"], "spec.disks",
                                  (have.get("spec") or {}).get("disks"), want["spec"]["disks"], destructive=True,
                                  reason="a pool's disk cannot change: delete and re-create (its replicas are lost)",
                                  data=KubeReplace(want)))
            pools.append(want["metadata"]["name"])
        else:
            noops.append(Noop("diskpool", want["metadata"]["name"], "exists on " + want["spec"]["disks"][0]))
    if pools:
        changes.append(Change("action", "diskpool", "DiskPools", "wait", reason="each pool Online with capacity",
                              data=WaitDiskPools(mv.diskpool(spec, "x", "x")["apiVersion"], ns, tuple(pools))))
    sc = mv.storage_class(spec)
    if facts.storage_class is None:
        changes.append(Change("create", "storage-class", sc["metadata"]["name"], new=sc["parameters"], data=KubeCreate(sc)))
    else:
        for f, old, new in mv.storage_class_drift(sc, facts.storage_class):
            changes.append(Change("update", "storage-class", sc["metadata"]["name"], f, old, new, disruptive=True,
                                  reason="immutable: delete and re-create (bound volumes keep working)", data=KubeReplace(sc)))
        if not mv.storage_class_drift(sc, facts.storage_class):
            noops.append(Noop("storage-class", sc["metadata"]["name"], "parameters as planned"))
    pvc = facts.test_pvc
    if pvc is None:
        changes.append(Change("create", "pvc", f"{ns}/{TEST_PVC}", new=f"1Gi on {spec.mayastor.storage_class}",
                              data=KubeCreate(mv.probe_pvc(spec, TEST_PVC, ns))))
    if pvc is None or not (pvc.get("metadata", {}).get("annotations") or {}).get(WRITTEN_ANNOTATION):
        changes.append(Change("action", "pvc", f"{ns}/{TEST_PVC}", "wait", reason="Bound",
                              data=WaitPvcBound(ns, TEST_PVC)))
        changes.append(Change("action", "job", f"{ns}/{job_name('write', TEST_PVC)}", reason="write 16 MiB and checksum it",
                              data=WriteTestVolume(ns, TEST_PVC)))
    else:
        noops.append(Noop("pvc", f"{ns}/{TEST_PVC}", "bound and written"))
    if any(c.kind in ("helm-release", "git-file", "diskpool", "pvc", "job") for c in changes):
        changes.insert(installed, Change("action", "mayastor", ns, "wait",
                                         reason="every Mayastor component ready, io-engine Running on each worker",
                                         data=WaitMayastor(ns, tuple(w.name for w in spec.cluster.workers))))
    return Plan(STEP, tuple(changes), tuple(noops), tuple(notes))


def _gitops_change(spec: LabSpec, facts: MayastorFacts) -> Change | None:
    """The ``mayastor-app.yaml`` change in the GitOps checkout (None: Git has it as planned)."""
    if facts.gitops_repo is None or spec.gitops is None:
        return None
    objects = [mayastor_application(spec)]
    edit = new_file_edit(f"{spec.gitops.platform_path}/mayastor-app.yaml", facts.gitops_file, objects)
    return file_change(edit, facts.gitops_repo, objects,
                       reason="the seed: Mayastor is deployed by Argo CD (falkit does not install it with Helm)")


# ---------------------------------------------------------------------------------------------
# Observe / apply / checks (the lab)


def _read(target: Any, ip: str, path: str) -> str:
    return target.talos.read(ip, path)


def observe_node(target: Any, spec: LabSpec, name: str, ip: str, device: str, node_obj: dict | None) -> NodeFacts:
    labels = None if node_obj is None else dict((node_obj.get("metadata") or {}).get("labels") or {})
    try:
        mem = parse_meminfo(_read(target, ip, "/proc/meminfo"))
        mods = _read(target, ip, "/proc/modules")
        cpus = sum(1 for line in _read(target, ip, "/proc/cpuinfo").splitlines() if line.startswith("processor"))
    except Exception as e:  # noqa: BLE001 - any Talos failure is reported as a failed check
        return NodeFacts(name, ip, error=str(e).splitlines()[0] if str(e) else type(e).__name__, labels=labels)
    size = None
    if device.startswith("/dev/sd") or device.startswith("/dev/vd") or device.startswith("/dev/nvme"):
        try:
            size = int(_read(target, ip, f"/sys/block/{device.rsplit('/', 1)[1]}/size").strip()) * 512
        except Exception:  # noqa: BLE001 - absent disk: NotFound
            size = None
    else:  # a by-id link cannot be read with talosctl read; trust the spec's slot and say so
        size = 1
    return NodeFacts(name, ip, hugepages_total=mem.get("HugePages_Total"), nvme_tcp=has_module(mods, "nvme_tcp"),
                     vcpus=cpus, disk=device, disk_bytes=size, labels=labels)


def observe(target: Any, spec: LabSpec, options: StepOptions) -> MayastorFacts:
    api = target.kube()
    ns = spec.mayastor.namespace
    nodes = []
    for w in spec.cluster.workers:
        nodes.append(observe_node(target, spec, w.name, w.ip, data_device(spec, w.name, options), kget(api, "v1", "Node", w.name)))
    nso = kget(api, "v1", "Namespace", ns)
    pools = {p["metadata"]["name"]: p for p in klist(api, mv.diskpool(spec, "x", "x")["apiVersion"], "DiskPool", ns)}
    return MayastorFacts(
        nodes=tuple(nodes),
        namespace_labels=None if nso is None else dict(nso["metadata"].get("labels") or {}),
        release=target.helm.get(ns, mv.RELEASE_NAME),
        pools=pools,
        storage_class=kget(api, "storage.k8s.io/v1", "StorageClass", spec.mayastor.storage_class),
        test_pvc=kget(api, "v1", "PersistentVolumeClaim", TEST_PVC, ns),
        io_engine=io_engine_pods(api, ns),
        **_argocd_facts(target, spec, api),
    )


def _argocd_facts(target: Any, spec: LabSpec, api: Any) -> dict[str, Any]:
    """Whether Argo CD's app-of-apps manages the platform, and if so the checkout and the text of
    ``mayastor-app.yaml`` in it now (plan makes the edit that deploys Mayastor with falkit's values)."""
    if spec.gitops is None or kget(api, "argoproj.io/v1alpha1", "Application", "platform", ARGOCD_NS) is None:
        return {}
    checkout = Checkout.for_target(target)
    rel = f"{spec.gitops.platform_path}/mayastor-app.yaml"
    return {"via_argocd": True, "gitops_repo": GitRepo.of(checkout),
            "gitops_file": checkout.read(rel) if checkout.exists(rel) else ""}


def io_engine_pods(api: Any, ns: str) -> dict[str, str]:
    """node -> state of its io-engine pod (``app=io-engine``, the chart's label): see :func:`pod_state`."""
    out = {}
    for p in klist(api, "v1", "Pod", ns):
        labels = p["metadata"].get("labels") or {}
        if labels.get("app") == "io-engine" or "io-engine" in p["metadata"]["name"]:
            node = (p.get("spec") or {}).get("nodeName")
            if node:
                out[node] = pod_state(p)
    return out


def _wait(what: str, timeout: float, fn, progress: Progress, total: float | None = None, poll: float = 0.2) -> Any:
    """Poll ``fn() -> (done, value, message)`` until done; raises StepError on timeout."""
    bar = progress.task(what, total)
    start = time.monotonic()
    report = WaitReporter(what, timeout)
    while True:
        done, value, msg = fn()
        bar(value if isinstance(value, (int, float)) else 0, msg)
        if done:
            return value
        report(msg)
        if time.monotonic() - start > timeout:
            raise StepError(STEP, f"{what}: not done after {timeout:g} s ({msg})")
        time.sleep(poll)


def _node_ready(node: dict | None) -> bool:
    conds = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def components_ready(api: Any, ns: str, workers: tuple[str, ...]) -> tuple[bool, int, str]:
    """Every Deployment/StatefulSet/DaemonSet in ``ns`` ready, io-engine Running on each of ``workers``."""
    waiting = []
    total = ready = 0
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for o in klist(api, "apps/v1", kind, ns):
            st = o.get("status") or {}
            want = st.get("desiredNumberScheduled") if kind == "DaemonSet" else (o.get("spec") or {}).get("replicas", 1)
            have = st.get("numberReady") if kind == "DaemonSet" else st.get("readyReplicas")
            total += 1
            if want is not None and (have or 0) >= want and (kind != "DaemonSet" or want > 0):
                ready += 1
            else:
                waiting.append(f"{o['metadata']['name']} {have or 0}/{want}")
    eng = io_engine_pods(api, ns)
    missing = [f"{w} ({eng.get(w, 'no pod')})" for w in workers if eng.get(w) != "Running"]
    if missing:  # before the DaemonSet counts: the node and the reason are what the operator needs
        waiting.insert(0, "io-engine not Running on " + ", ".join(missing))
    not_ready = [w for w in workers if not _node_ready(kget(api, "v1", "Node", w))]
    if not_ready:
        waiting.insert(0, "nodes not Ready: " + ", ".join(not_ready))
    done = total > 0 and not waiting
    return done, ready, ("ready: " + f"{ready}/{total} workloads") if done else "waiting: " + "; ".join(waiting[:4])


def replica_placement(target: Any, spec: LabSpec, pv_name: str) -> list[dict[str, str]]:
    """``[{replica, pool, node, state}]`` of a Mayastor volume.

    Live: Mayastor's REST API (``GET /v0/volumes/{uuid}`` replica_topology) through the API
    server's service proxy; the PV name is ``pvc-<uuid>``. Twin: the same route is not served;
    the twin's PV carries the placement it models in the annotations
    ``falkit.twin/replicas`` (pools) and ``falkit.twin/replica-nodes``.
    """
    api = target.kube()
    pv = kget(api, "v1", "PersistentVolume", pv_name) or {}
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if ann.get("falkit.twin/replicas"):
        pools = [p for p in ann["falkit.twin/replicas"].split(",") if p]
        nodes = [n for n in (ann.get("falkit.twin/replica-nodes") or "").split(",") if n]
        state = ann.get("falkit.twin/volume-state", "healthy")
        return [{"replica": str(i), "pool": p, "node": nodes[i] if i < len(nodes) else "", "state": state}
                for i, p in enumerate(pools)]
    uuid = pv_name.removeprefix("pvc-")
    path = f"/api/v1/namespaces/{spec.mayastor.namespace}/services/{mv.RELEASE_NAME}-api-rest:8081/proxy/v0/volumes/{uuid}"
    try:
        vol = kraw_get(api, path)
    except Exception:  # noqa: BLE001 - REST API not reachable: placement unknown
        return []
    topo = (vol.get("state") or {}).get("replica_topology") or {}
    return [{"replica": rid, "pool": r.get("pool", ""), "node": r.get("node", ""), "state": r.get("state", "")}
            for rid, r in topo.items()]


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads


@executes(WaitMayastor)
def _wait_mayastor(c: Change, ctx: Apply) -> None:
    d: WaitMayastor = c.data
    api = ctx.target.kube()
    _wait("Mayastor components", ctx.timeout, lambda: components_ready(api, d.namespace, d.workers), ctx.progress)


@executes(WaitDiskPools)
def _wait_pools(c: Change, ctx: Apply) -> None:
    d: WaitDiskPools = c.data
    api = ctx.target.kube()

    def poll() -> tuple[bool, int, str]:
        states = {name: _pool_state(kget(api, d.api_version, "DiskPool", name, d.namespace) or {}) for name in d.names}
        ok = sum(1 for s, cap in states.values() if s == "Online" and cap > 0)
        return ok == len(d.names), ok, ", ".join(f"{n}: {s or 'pending'}" for n, (s, _) in states.items())

    _wait("DiskPools Online", ctx.timeout, poll, ctx.progress, total=len(d.names))


@executes(WaitPvcBound)
def _wait_pvc(c: Change, ctx: Apply) -> None:
    d: WaitPvcBound = c.data
    api = ctx.target.kube()
    _wait(f"PVC {d.name} Bound", ctx.timeout, lambda: _pvc_bound(api, d.namespace, d.name), ctx.progress)


@executes(WriteTestVolume)
def _write_test(c: Change, ctx: Apply) -> None:
    d: WriteTestVolume = c.data
    api = ctx.target.kube()
    bar = ctx.progress.task(f"write test data to {d.claim}", None)
    try:
        run_job(api, write_job(job_name("write", d.claim), d.namespace, d.claim), ctx.timeout,
                on_poll=lambda s: bar(s, "writing"))
        digest = parse_checksum(run_job(api, checksum_job(job_name("checksum", d.claim), d.namespace, d.claim), ctx.timeout))
    except (JobFailedError, ValueError) as e:
        raise StepError(STEP, f"test volume {d.namespace}/{d.claim}: {e}") from e
    kpatch(api, "v1", "PersistentVolumeClaim", d.claim, {"metadata": {"annotations": {WRITTEN_ANNOTATION: digest}}}, d.namespace)
    bar(1, f"written, sha256 {digest[:12]}…")


@register(STEP)
class MayastorStep:
    title = "OpenEBS Mayastor: preflight, install, DiskPools, StorageClass"
    options = {"disk_by_id": (bool, False)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> MayastorFacts:
        return observe(target, spec, options)

    def plan(self, spec: LabSpec, observed: MayastorFacts, options: StepOptions) -> Plan:
        return plan_mayastor(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        blocked = [c for c in plan.changes if c.kind == "preflight"]
        if blocked:
            raise StepError(STEP, "preflight failed: " + "; ".join(f"{c.name}: {c.reason}" for c in blocked))
        execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe(target, spec, options)
        return checks_from(target, spec, facts)


def _pvc_bound(api: Any, ns: str, name: str) -> tuple[bool, int, str]:
    pvc = kget(api, "v1", "PersistentVolumeClaim", name, ns) or {}
    phase = (pvc.get("status") or {}).get("phase", "absent")
    return phase == "Bound", int(phase == "Bound"), phase


def checks_from(target: Any, spec: LabSpec, facts: MayastorFacts) -> list[Check]:
    out: list[Check] = []
    for n in facts.nodes:
        out += preflight(spec, n)
        phase = facts.io_engine.get(n.name, "absent")
        out.append(Check("io-engine Running", n.name, "Running", phase, phase == "Running",
                         f"kubectl -n {spec.mayastor.namespace} describe pod -l app=io-engine (hugepages, cores, nvme_tcp)"))
        pool = facts.pools.get(mv.pool_name(n.name))
        state, cap = _pool_state(pool) if pool else ("absent", 0)
        out.append(Check("DiskPool Online", mv.pool_name(n.name), "Online, capacity > 0",
                         f"{state or 'pending'}, {cap / 1e9:.0f} GB", state == "Online" and cap > 0,
                         f"kubectl -n {spec.mayastor.namespace} describe diskpool {mv.pool_name(n.name)}"))
    sc = facts.storage_class
    want = mv.storage_class(spec)
    drift = mv.storage_class_drift(want, sc) if sc else []
    out.append(Check("StorageClass", spec.mayastor.storage_class, f"{mv.PROVISIONER} {want['parameters']}",
                     "absent" if sc is None else f"{sc.get('provisioner')} {sc.get('parameters')}", sc is not None and not drift,
                     "re-run 50-mayastor with apply"))
    pvc = facts.test_pvc or {}
    phase = (pvc.get("status") or {}).get("phase", "absent")
    out.append(Check("test PVC Bound", f"{spec.mayastor.namespace}/{TEST_PVC}", "Bound", phase, phase == "Bound",
                     "kubectl describe pvc; check the pools' free space"))
    pv = (pvc.get("spec") or {}).get("volumeName")
    if pv:
        reps = replica_placement(target, spec, pv)
        nodes = [r["node"] for r in reps]
        ok = len(reps) == spec.mayastor.replicas and len(set(nodes)) == len(nodes)
        out.append(Check("replicas on distinct nodes", pv, f"{spec.mayastor.replicas} replicas on {spec.mayastor.replicas} nodes",
                         ", ".join(f"{r['pool']}@{r['node']}" for r in reps) or "placement unknown", ok,
                         "kubectl mayastor get volume-replica-topologies"))
    return out
