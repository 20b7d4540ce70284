"""Mayastor, workloads/jobs and the TrueNAS round trip against a real twin Proxmox process.

Behaviours: io-engine Running with 1024 hugepages + nvme_tcp + a core list that fits; Pending with
the scheduler's "Insufficient hugepages-2Mi" without hugepages; CrashLoopBackOff with DPDK's EAL
message for the chart's default cores 1,2 on a 2-vCPU VM; csi-node stuck in init ("nvme_tcp module
not loaded...") without the module. DiskPools Online with the VM disk's capacity, not created for a
disk the VM lacks. A repl-3 PVC binds with replicas on three distinct nodes; with two pools it stays
Pending ("not enough suitable pools available, 2/3"); a stopped VM degrades the volume. Jobs: the
fio Job's log parses as modelled fio JSON, runs the pod's job file (not falkit's annotation) and
divides helford's write speed among three replicas on it; copy keeps the checksum, the corrupt_copy fault breaks
it; a Deployment gets Running pods and status. TrueNAS: falkit's client round-trips interfaces,
NFS shares and services once the TrueNAS VM runs. The pve process is a child process on loopback
(``pve_fixtures.start_pve``); the kube emulator is the ``twin`` fixture.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from pve_fixtures import fal_spec, start_pve, stop_pve, wait_task

from falkit.bench.fio import k8s_job_manifest, parse_fio_json
from falkit.clients.truenas import TrueNasClient, TrueNasError
from falkit.model.spec import load_spec
from falkit.twin.lab import jobs, mayastor, workloads
from falkit.twin.lab.charts import CHARTS
from falkit.twin.lab.context import LabContext, Release, TalosNode
from falkit.twin.lab.pvereader import PveReader
from falkit.twin.lab.truenas import api_key, truenas_routes
from falkit.twin.supervisor import pve_config_from_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(REPO / "parameters" / "fal.yaml")
WORKERS = ("talos-worker-01", "talos-worker-02", "talos-worker-03")
COMMON = {"ostype": "l26", "scsihw": "virtio-scsi-single", "cpu": "host", "sockets": 1, "cores": 2, "memory": "9216"}


@pytest.fixture(scope="module")
def pve(tmp_path_factory):
    cfg = pve_config_from_spec(fal_spec(), "empty")
    cfg["bridges"].append({"iface": "vmbr1", "type": "bridge", "bridge_ports": "", "cidr": "10.11.0.1/24",
                           "autostart": 1})
    for i, _ in enumerate(WORKERS):
        cfg["vms"].append({"vmid": 201 + i, "name": WORKERS[i], "status": "running", "config": dict(
            COMMON, net0=f"virtio=52:54:00:10:10:{11 + i},bridge=vmbr0",
            net1=f"virtio=52:54:00:10:11:{11 + i},bridge=vmbr1", scsi0="local-lvm:30", scsi1="helford:300")})
    cfg["vms"].append({"vmid": 300, "name": "truenas", "status": "running", "config": dict(
        COMMON, net0="virtio=52:54:00:10:10:20,bridge=vmbr0", net1="virtio=52:54:00:10:11:20,bridge=vmbr1",
        scsi0="local-lvm:32")})
    twin = start_pve(tmp_path_factory.mktemp("pve"), cfg)
    yield twin
    stop_pve(twin.proc)


def run(twin, coro):
    return asyncio.run_coroutine_threadsafe(coro, twin.loop).result(30)


def make_ctx(twin, pve, tmp_path, *, hugepages=("1024",) * 3, modules=(["nvme_tcp"],) * 3, values=None):
    reader = PveReader(pve.state_dir / "pve.json", ttl=0)
    ctx = LabContext(twin.store, SPEC, tmp_path, reader, 0.0)
    for i, name in enumerate(WORKERS):
        ip = f"10.10.0.{11 + i}"
        ctx.talos_nodes[ip] = TalosNode(ip=ip, vmid=201 + i, hostname=name, mode="running",
                                        sysctls={"vm.nr_hugepages": hugepages[i]} if hugepages[i] else {},
                                        kernel_modules=list(modules[i]),
                                        addresses={"eth0": [f"{ip}/24"], "eth1": [f"10.11.0.{11 + i}/24"]})
        twin.store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "openebs.io/engine": "mayastor"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": ip}]}}, keep_status=True)
    rel = Release("mayastor", "mayastor", "mayastor", "2.8.0", values if values is not None else
                  {"io_engine": {"coreList": [1]}})
    ctx.releases[("mayastor", "mayastor")] = rel
    twin.core.create_namespace({"metadata": {"name": "mayastor"}})
    for obj in CHARTS["mayastor"].render(ctx, rel):
        twin.store.create(obj)
    return ctx


def pod_of(twin, prefix, node):
    return next(p for p in twin.core.list_namespaced_pod("mayastor").items
                if p.metadata.name.startswith(prefix) and
                (p.spec.node_name == node or node in str(p.spec.affinity)))


def test_io_engine_running_pending_and_nvme_tcp(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path, hugepages=("1024", "", "1024"), modules=(["nvme_tcp"], ["nvme_tcp"], []))
    run(twin, mayastor.reconcile(ctx))
    ok = pod_of(twin, "mayastor-io-engine", WORKERS[0])
    assert ok.status.phase == "Running" and ok.status.container_statuses[0].ready
    pend = pod_of(twin, "mayastor-io-engine", WORKERS[1])
    assert pend.status.phase == "Pending" and pend.spec.node_name is None
    cond = next(c for c in pend.status.conditions if c.type == "PodScheduled")
    assert cond.reason == "Unschedulable" and "1 Insufficient hugepages-2Mi" in cond.message
    assert cond.message.startswith("0/3 nodes are available")
    csi = pod_of(twin, "mayastor-csi-node", WORKERS[2])
    assert csi.status.phase == "Pending" and csi.status.init_container_statuses[0].name == "nvme-tcp-probe"
    assert twin.core.read_namespaced_pod_log(csi.metadata.name, "mayastor", container="nvme-tcp-probe") == \
        "nvme_tcp module not loaded...\n"
    assert pod_of(twin, "mayastor-csi-node", WORKERS[0]).status.phase == "Running"


def test_io_engine_default_cores_crash_on_two_vcpus(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path, values={})  # chart default cpuCount "2" => cores 1,2
    run(twin, mayastor.reconcile(ctx))
    rv = twin.store.resource_version
    run(twin, mayastor.reconcile(ctx))
    assert twin.store.resource_version == rv  # a quiet second pass: no busy loop of status writes
    pod = pod_of(twin, "mayastor-io-engine", WORKERS[0])
    cs = pod.status.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert "EAL: lcore 2 unavailable" in cs.last_state.terminated.message
    assert "please check specified cores are part of 0-1" in twin.core.read_namespaced_pod_log(
        pod.metadata.name, "mayastor")


def diskpool(twin, name, node, disk="/dev/sdb"):
    twin.custom.create_namespaced_custom_object("openebs.io", "v1beta2", "mayastor", "diskpools", {
        "apiVersion": "openebs.io/v1beta2", "kind": "DiskPool", "metadata": {"name": name},
        "spec": {"node": node, "disks": [disk]}})


def pool_status(twin, name):
    return twin.custom.get_namespaced_custom_object("openebs.io", "v1beta2", "mayastor", "diskpools", name)["status"]


def pvc(twin, name, sc="mayastor-3", size="1Gi", ns="default"):
    twin.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": sc, "resources": {"requests": {"storage": size}}}})


def storage_class(twin, repl="3"):
    client = __import__("kubernetes").client.StorageV1Api(twin.api)
    client.create_storage_class({"metadata": {"name": "mayastor-3"}, "provisioner": "io.openebs.csi-mayastor",
                                 "parameters": {"repl": repl, "protocol": "nvmf", "thin": "true", "fsType": "ext4"}})


def test_pools_and_pvc_binding(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    storage_class(twin)
    diskpool(twin, "pool-1", WORKERS[0])
    diskpool(twin, "pool-2", WORKERS[1], "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1")
    diskpool(twin, "pool-x", WORKERS[2], "/dev/sdc")  # the VM has no scsi2
    pvc(twin, "data")
    run(twin, mayastor.reconcile(ctx))
    st = pool_status(twin, "pool-1")
    assert (st["cr_state"], st["pool_status"], st["capacity"]) == ("Created", "Online", 300 * 1024 ** 3)
    assert pool_status(twin, "pool-2")["pool_status"] == "Online"
    bad = pool_status(twin, "pool-x")
    assert (bad["cr_state"], bad["pool_status"]) == ("Creating", "Unknown")
    claim = twin.core.read_namespaced_persistent_volume_claim("data", "default")
    assert claim.status.phase == "Pending"
    msgs = [e.message for e in twin.core.list_namespaced_event("default").items if e.reason == "ProvisioningFailed"]
    assert msgs and "not enough suitable pools available, 2/3" in msgs[0]
    diskpool(twin, "pool-3", WORKERS[2])
    run(twin, mayastor.reconcile(ctx))
    claim = twin.core.read_namespaced_persistent_volume_claim("data", "default")
    assert claim.status.phase == "Bound"
    pv = twin.core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.csi.driver == "io.openebs.csi-mayastor" and pv.spec.csi.volume_handle == claim.metadata.uid
    assert sorted(pv.metadata.annotations["falkit.twin/replicas"].split(",")) == ["pool-1", "pool-2", "pool-3"]
    assert sorted(pv.metadata.annotations["falkit.twin/replica-nodes"].split(",")) == list(WORKERS)
    api = pve.api()
    wait_task(api, pve.node, api.nodes(pve.node).qemu(202).status.stop.post())
    try:
        run(twin, mayastor.reconcile(ctx))
        assert pool_status(twin, "pool-2")["pool_status"] == "Unknown"
        pv = twin.core.read_persistent_volume(claim.spec.volume_name)
        assert pv.metadata.annotations["falkit.twin/volume-state"] == "degraded"
        assert ctx.volumes[pv.metadata.name].state == "degraded"
    finally:
        wait_task(api, pve.node, api.nodes(pve.node).qemu(202).status.start.post())


def job_done(twin, name, ns="default"):
    job = __import__("kubernetes").client.BatchV1Api(twin.api).read_namespaced_job_status(name, ns)
    assert job.status.succeeded == 1, job.status
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    pod = twin.core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items[0]
    assert pod.status.phase == "Succeeded"
    return twin.core.read_namespaced_pod_log(pod.metadata.name, ns)


def create_job(twin, manifest, ns="default"):
    __import__("kubernetes").client.BatchV1Api(twin.api).create_namespaced_job(ns, manifest)


def test_fio_runs_the_pods_job_file_on_the_volumes_replicas(twin, pve, tmp_path):
    """The twin's fio (falkit.twin.lab.perf) plays the job file the pod hands fio, not falkit's
    annotation, on the volume's real replicas: three replicas whose pools share helford write at
    most a third of its sequential write; a read is served by one replica at the device's speed."""
    ctx = make_ctx(twin, pve, tmp_path)
    storage_class(twin)
    for i, w in enumerate(WORKERS):
        diskpool(twin, f"pool-{i}", w)
    pvc(twin, "bench")
    run(twin, mayastor.reconcile(ctx))
    run(twin, mayastor.reconcile(ctx))
    m = k8s_job_manifest("fio", "default", "bench", ["seq_write", "seq_read"], "quick", target="mayastor")
    env = m["spec"]["template"]["spec"]["containers"][0]["env"][0]
    env["value"] = env["value"].replace("[seq_read]", "[my_read]")  # the annotation still says seq_read
    create_job(twin, m)
    run(twin, workloads.reconcile(ctx))
    df = parse_fio_json(job_done(twin, "fio")).set_index("job")
    assert list(df.index) == ["seq_write", "my_read"]
    dev = SPEC.storage("helford").device
    assert df.loc["seq_write", "write_mib_s"] * 2**20 == pytest.approx(dev.seq_write_mb_s * 1e6 / 3)
    assert df.loc["my_read", "read_mib_s"] * 2**20 == pytest.approx(dev.seq_read_mb_s * 1e6)


def test_jobs_fio_copy_checksum_and_corruption(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    storage_class(twin)
    for i, w in enumerate(WORKERS):
        diskpool(twin, f"pool-{i}", w)
    for name in ("src", "dst", "dst2", "bench"):
        pvc(twin, name)
    run(twin, mayastor.reconcile(ctx))
    run(twin, mayastor.reconcile(ctx))  # csi-node pods ran: mounts work
    create_job(twin, k8s_job_manifest("fio", "default", "bench", ["seq_write", "rand_read_iops"], "quick",
                                      target="mayastor"))
    create_job(twin, jobs.job_manifest("write", "w", "default", pvc="src", nbytes=1000))
    run(twin, workloads.reconcile(ctx))
    df = parse_fio_json(job_done(twin, "fio"))
    assert set(df["source"]) == {"modelled"} and len(df) == 2
    assert job_done(twin, "w") == "wrote 1000 bytes\n"
    create_job(twin, jobs.job_manifest("copy", "c1", "default", source_pvc="src", target_pvc="dst"))
    ctx.extra.setdefault("faults", {})["corrupt_copy"] = ["default/dst2"]
    create_job(twin, jobs.job_manifest("copy", "c2", "default", source_pvc="src", target_pvc="dst2"))
    run(twin, workloads.reconcile(ctx))
    assert job_done(twin, "c1") == "copied 1000 bytes\n"
    for n, claim in (("k0", "src"), ("k1", "dst"), ("k2", "dst2")):
        create_job(twin, jobs.job_manifest("checksum", n, "default", pvc=claim))
    run(twin, workloads.reconcile(ctx))
    sums = [job_done(twin, n).split() for n in ("k0", "k1", "k2")]
    assert sums[0][0] == "sha256" and len(sums[0][1]) == 64
    assert sums[0] == sums[1] and sums[2] != sums[0]


def test_deployment_pods_and_ping(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    twin.apps.create_namespaced_deployment("default", {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "nginx:1"}]}}}})
    run(twin, workloads.reconcile(ctx))
    run(twin, workloads.reconcile(ctx))
    d = twin.apps.read_namespaced_deployment_status("web", "default")
    assert (d.status.replicas, d.status.ready_replicas, d.status.available_replicas) == (2, 2, 2)
    pods = twin.core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 2 and all(p.status.phase == "Running" and p.spec.node_name for p in pods)
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)
    twin.apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 0}})
    run(twin, workloads.reconcile(ctx))
    assert not twin.core.list_namespaced_pod("default", label_selector="app=web").items
    create_job(twin, jobs.job_manifest("ping", "p", "default", node=WORKERS[0],
                                       targets=["10.11.0.12", "10.11.0.99", "10.10.0.13"]))
    run(twin, workloads.reconcile(ctx))
    import json
    got = json.loads(job_done(twin, "p"))
    assert got["node"] == WORKERS[0]
    assert [r["reachable"] for r in got["results"]] == [True, False, True]


def test_truenas_round_trip(twin, pve, tmp_path):
    ctx = LabContext(twin.store, SPEC.model_copy(update={"truenas": SPEC.truenas.model_copy(update={"enabled": True})}),
                     tmp_path, PveReader(pve.state_dir / "pve.json", ttl=0), 0.0)
    app = web.Application()
    app.add_routes(truenas_routes(ctx))

    async def start():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]  # noqa: SLF001

    runner, port = run(twin, start())
    try:
        url = f"http://127.0.0.1:{port}/lab/truenas"
        with pytest.raises(TrueNasError) as e:
            TrueNasClient(url, "wrong").interfaces()
        assert e.value.status == 401
        nas = TrueNasClient(url, api_key(ctx))
        assert [i["name"] for i in nas.interfaces()] == ["ens18", "ens19"]
        nas.set_aliases("ens19", [{"type": "INET", "address": "10.11.0.20", "netmask": 24}])
        assert nas.has_pending_changes()
        nas.commit()
        nas.checkin()
        ens19 = next(i for i in nas.interfaces() if i["name"] == "ens19")
        assert ens19["aliases"] == [{"type": "INET", "address": "10.11.0.20", "netmask": 24}]
        assert not nas.has_pending_changes()
        share = nas.ensure_nfs_share("/mnt/tank/media", ["10.11.0.0/24"])
        again = nas.ensure_nfs_share("/mnt/tank/media", ["10.11.0.0/24"])
        assert share["id"] == again["id"] and len(nas.nfs_shares()) == 1
        assert nas.ensure_nfs_share("/mnt/tank/media", ["10.11.0.0/24", "10.10.0.0/24"])["networks"][1] == "10.10.0.0/24"
        with pytest.raises(TrueNasError, match="sharingnfs_create.path"):
            nas.ensure_nfs_share("/tank", [])
        svc = nas.enable_service("nfs")
        assert svc["enable"] is True and svc["state"] == "RUNNING"
    finally:
        run(twin, runner.cleanup())
