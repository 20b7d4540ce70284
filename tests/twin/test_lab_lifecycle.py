"""Object lifecycle in the twin (issue 15 item 5), asserted on the emulator's and the lab's state.

Behaviours: a deleted PVC's PV goes Released and, with reclaimPolicy Delete, is deleted with its
volume and the Mayastor pool space it took (Retain: stays Released); a pod bound to a node never
goes back to Pending with a FailedScheduling event (a Running pod whose claim is deleted stays
Running; a bound, not-started pod waits with kubelet's FailedMount; a bound io-engine pod on a
stopped VM stays bound); removing ``machine.nodeLabels`` from a Talos config removes the labels
Talos set (``talos.dev/owned-labels``) and keeps labels others set; removing the hugepages sysctl
without a reboot keeps the pages reserved at boot, a reboot frees them; ``/version`` reports the
Kubernetes the cluster was bootstrapped with (the spec's 1.34.1, or the config's apiServer image).
Init containers: the csi-node pod has the chart's ``nvme-tcp-probe`` init container in its spec,
and the real ``kubectl logs -c nvme-tcp-probe`` prints its log (an unknown container: the
apiserver's "container ... is not valid for pod ..."); skipped only where kubectl is not installed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from pve_fixtures import wait_task
from test_lab_controllers_storage import WORKERS, diskpool, make_ctx, pool_status, run
from test_lab_controllers_storage import pve as storage_pve
from test_lab_talos import OLD_CP, OLD_WORKER, cp_config, get, post, worker_config

from falkit.twin.lab import mayastor, pods, workloads

pve = storage_pve  # the module-scoped twin Proxmox with three workers (test_lab_controllers_storage)


def storage_class(twin, name, reclaim):
    client.StorageV1Api(twin.api).create_storage_class({
        "metadata": {"name": name}, "provisioner": "io.openebs.csi-mayastor", "reclaimPolicy": reclaim,
        "parameters": {"repl": "1", "protocol": "nvmf", "thin": "false", "fsType": "ext4"}})


def claim(twin, name, sc):
    twin.core.create_namespaced_persistent_volume_claim("default", {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": sc, "resources": {"requests": {"storage": "1Gi"}}}})


def passes(twin, ctx):
    run(twin, workloads.reconcile(ctx))
    run(twin, mayastor.reconcile(ctx))


def used(twin):
    return sum(pool_status(twin, f"pool-{i}")["used"] for i in range(3))


def test_deleted_pvc_releases_its_pv_delete_frees_the_pool_retain_keeps_it(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    for i, w in enumerate(WORKERS):
        diskpool(twin, f"pool-{i}", w)
    storage_class(twin, "ms-delete", "Delete")
    storage_class(twin, "ms-retain", "Retain")
    claim(twin, "gone", "ms-delete")
    claim(twin, "kept", "ms-retain")
    passes(twin, ctx)
    passes(twin, ctx)  # pools report the usage of the volumes the first pass provisioned
    gone = twin.core.read_namespaced_persistent_volume_claim("gone", "default").spec.volume_name
    kept = twin.core.read_namespaced_persistent_volume_claim("kept", "default").spec.volume_name
    assert gone and kept and gone in ctx.volumes
    assert used(twin) == 2 * 1024 ** 3
    twin.core.delete_namespaced_persistent_volume_claim("gone", "default")
    twin.core.delete_namespaced_persistent_volume_claim("kept", "default")
    passes(twin, ctx)
    passes(twin, ctx)
    with pytest.raises(ApiException) as exc:
        twin.core.read_persistent_volume(gone)
    assert exc.value.status == 404
    assert gone not in ctx.volumes
    assert twin.core.read_persistent_volume(kept).status.phase == "Released"
    assert used(twin) == 1024 ** 3  # the Delete volume's replica space is free again; Retain keeps its own


def pod_with_claim(twin, name, claim_name, node):
    twin.core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {
        "nodeName": node, "containers": [{"name": "app", "image": "busybox"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]}})
    return twin.store.get("v1", "Pod", name, "default")


def failed_scheduling(twin, name):
    return [e for e in twin.core.list_namespaced_event("default").items
            if e.involved_object.name == name and e.reason == "FailedScheduling"]


def test_a_scheduled_pod_never_goes_back_to_pending(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    for i, w in enumerate(WORKERS):
        diskpool(twin, f"pool-{i}", w)
    storage_class(twin, "ms-delete", "Delete")
    claim(twin, "data", "ms-delete")
    passes(twin, ctx)
    pod = pod_with_claim(twin, "user", "data", WORKERS[0])
    pods.reconcile_pods(ctx, [pod], 3)
    assert twin.core.read_namespaced_pod("user", "default").status.phase == "Running"
    twin.core.delete_namespaced_persistent_volume_claim("data", "default")
    passes(twin, ctx)
    pods.reconcile_pods(ctx, [twin.store.get("v1", "Pod", "user", "default")], 3)
    got = twin.core.read_namespaced_pod("user", "default")
    assert got.status.phase == "Running" and got.spec.node_name == WORKERS[0]
    assert not failed_scheduling(twin, "user")
    # a pod bound to a node whose claim is missing waits in the kubelet, still scheduled
    pod = pod_with_claim(twin, "late", "missing", WORKERS[1])
    pods.reconcile_pods(ctx, [pod], 3)
    got = twin.core.read_namespaced_pod("late", "default")
    assert got.status.phase == "Pending" and got.spec.node_name == WORKERS[1]
    assert next(c for c in got.status.conditions if c.type == "PodScheduled").status == "True"
    assert not failed_scheduling(twin, "late")
    mounts = [e.message for e in twin.core.list_namespaced_event("default").items
              if e.involved_object.name == "late" and e.reason == "FailedMount"]
    assert mounts and "unmounted volumes=[data]" in mounts[0]


def test_io_engine_on_a_stopped_vm_stays_bound(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path)
    run(twin, mayastor.reconcile(ctx))

    def io_engine():
        return next(p for p in twin.core.list_namespaced_pod("mayastor").items
                    if p.metadata.name.startswith("mayastor-io-engine") and p.spec.node_name == WORKERS[1])

    assert io_engine().status.phase == "Running"
    api = pve.api()
    wait_task(api, pve.node, api.nodes(pve.node).qemu(202).status.stop.post())
    try:
        run(twin, mayastor.reconcile(ctx))
        pod = io_engine()
        assert pod.status.phase == "Running" and pod.spec.node_name == WORKERS[1]
        assert next(c for c in pod.status.conditions if c.type == "PodScheduled").status == "True"
        assert not [e for e in twin.core.list_namespaced_event("mayastor").items
                    if e.involved_object.name == pod.metadata.name and e.reason == "FailedScheduling"]
    finally:
        wait_task(api, pve.node, api.nodes(pve.node).qemu(202).status.start.post())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kubectl_logs_of_the_csi_node_init_container(twin, pve, tmp_path):
    ctx = make_ctx(twin, pve, tmp_path, modules=(["nvme_tcp"], ["nvme_tcp"], []))
    run(twin, mayastor.reconcile(ctx))
    pod = next(p for p in twin.core.list_namespaced_pod("mayastor").items
               if p.metadata.name.startswith("mayastor-csi-node") and p.spec.node_name == WORKERS[2])
    assert [c.name for c in pod.spec.init_containers] == ["nvme-tcp-probe"]

    def kubectl(*args):
        return subprocess.run([shutil.which("kubectl"), "--kubeconfig", str(twin.kubeconfig), "-n", "mayastor",
                               "logs", pod.metadata.name, *args], capture_output=True, text=True, timeout=60)

    out = kubectl("-c", "nvme-tcp-probe")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "nvme_tcp module not loaded...\n"
    bad = kubectl("-c", "nope")
    assert bad.returncode == 1 and f"container nope is not valid for pod {pod.metadata.name}" in bad.stderr


# --------------------------------------------------------------------------- Talos-driven lifecycle

def boot_cluster(lab, cp: str | None = None):
    post(lab, "/talos/apply", {"node": OLD_CP, "config": cp or cp_config(), "insecure": True}).raise_for_status()
    post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True}).raise_for_status()
    r = post(lab, "/talos/bootstrap", {"node": OLD_CP})
    assert r.status_code == 200, r.text


def test_removed_node_labels_leave_the_node_and_others_labels_stay(lab_unbooted):
    lab = lab_unbooted
    boot_cluster(lab)
    lab.wait(lambda: lab.store.try_get("v1", "Node", "talos-worker-01"), 20, "worker Node")
    node = lab.core.read_node("talos-worker-01")
    assert node.metadata.labels["openebs.io/engine"] == "mayastor"
    lab.core.patch_node("talos-worker-01", {"metadata": {"labels": {"team": "storage"}}})
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(labels={})})
    assert r.status_code == 200 and r.json()["reboot"] is False, r.text
    lab.wait(lambda: "openebs.io/engine" not in (lab.core.read_node("talos-worker-01").metadata.labels or {}),
             10, "the Talos-owned label to go")
    labels = lab.core.read_node("talos-worker-01").metadata.labels
    assert labels["team"] == "storage" and labels["kubernetes.io/hostname"] == "talos-worker-01"


def hugepages_total(lab):
    meminfo = lab.lab.talos_read(OLD_WORKER, "/proc/meminfo")
    return next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("HugePages_Total:"))


def test_hugepages_stay_reserved_until_a_reboot(lab_unbooted):
    lab = lab_unbooted
    post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(), "insecure": True}).raise_for_status()
    assert hugepages_total(lab) == 1024
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(hugepages=None)})
    assert r.status_code == 200 and r.json()["reboot"] is False, r.text
    assert hugepages_total(lab) == 1024
    assert lab.lab.talos_read(OLD_WORKER, "/proc/sys/vm/nr_hugepages").strip() == "1024"
    # a change that reboots the node (kernel modules) boots with the config's (no) hugepages
    r = post(lab, "/talos/apply", {"node": OLD_WORKER, "config": worker_config(hugepages=None, modules=())})
    assert r.status_code == 200 and r.json()["reboot"] is True, r.text
    lab.wait(lambda: get(lab, "/talos/config", node=OLD_WORKER).status_code == 200, 10, "node back")
    assert hugepages_total(lab) == 0


def test_version_is_the_kubernetes_the_cluster_runs(lab_unbooted):
    lab = lab_unbooted
    boot_cluster(lab)
    info = client.VersionApi(lab.api).get_code()
    assert info.git_version.startswith("v1.34.1") and (info.major, info.minor) == ("1", "34")


def test_version_follows_the_configs_apiserver_image(lab_unbooted):
    lab = lab_unbooted
    cp = yaml.safe_load(cp_config())
    cp["cluster"]["apiServer"] = {"image": "registry.k8s.io/kube-apiserver:v1.33.5"}
    boot_cluster(lab, yaml.safe_dump(cp))
    info = client.VersionApi(lab.api).get_code()
    assert info.git_version.startswith("v1.33.5") and info.minor == "33"
