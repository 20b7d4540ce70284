"""Server-side Table output as the real kubectl prints it (issue 15 item 6), on the bare emulator.

Covers: pod STATUS reasons after printers.go's printPod (``Init:0/1`` while an init container runs,
``Init:CrashLoopBackOff``, ``CrashLoopBackOff``, ``Completed``, ``Terminating``) and RESTARTS with
"(… ago)"; node STATUS ``Ready,SchedulingDisabled`` and the wide columns; StorageClass defaults
(``Delete``/``Immediate``/``false``, `` (default)``); PV/PVC columns; CRD ``additionalPrinterColumns``
rendered like the apiextensions apiserver (a ``date`` column is an age, no second AGE column,
JSONPath filters fill CONFLICTING / IPS AVAILABLE of Cilium pools); event columns (LAST SEEN TYPE
REASON OBJECT MESSAGE); the OpenAPI v3 documents kubectl reads (the PATCH operation with
``fieldValidation``; CRD schemas with their GVK); kubectl create/apply with validation on (server-side
strict field validation with the apiserver's "cannot be handled as a" message).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import pytest
import requests

from falkit.twin.kube import load_crd_file

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine (Debian: "
                                                           "apt-get install kubernetes-client)")
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


def _ago(seconds: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kubectl(twin, tmp_path, *args):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(tmp_path / "cache")}
    out = subprocess.run([KUBECTL, "--kubeconfig", str(twin.kubeconfig), *args], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _rows(text: str) -> dict[str, list[str]]:
    return {ln.split()[0]: re.split(r"\s{2,}", ln.strip()) for ln in text.splitlines()[1:] if ln.strip()}


def _pod(name, spec_extra=None, status=None, md_extra=None):
    spec = {"containers": [{"name": "c", "image": "x:1"}], **(spec_extra or {})}
    for key in ("containerStatuses", "initContainerStatuses"):
        for c in (status or {}).get(key) or []:
            c.setdefault("image", "x:1")
            c.setdefault("imageID", "")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", **(md_extra or {})},
            "spec": spec, "status": status or {}}


@needs_kubectl
def test_pod_status_reasons(twin, tmp_path):
    s = twin.store
    init = {"initContainers": [{"name": "nvme-tcp-probe", "image": "busybox"}]}
    s.create(_pod("init-running", init, {"phase": "Pending", "initContainerStatuses": [
        {"name": "nvme-tcp-probe", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": _ago(5)}}}],
        "containerStatuses": [{"name": "c", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "PodInitializing"}}}]}), keep_status=True)
    s.create(_pod("init-crash", init, {"phase": "Pending", "initContainerStatuses": [
        {"name": "nvme-tcp-probe", "ready": False, "restartCount": 3,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}), keep_status=True)
    s.create(_pod("crash", None, {"phase": "Running", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": _ago(630)}}}]}),
        keep_status=True)
    s.create(_pod("done", None, {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}), keep_status=True)
    s.create(_pod("up", None, {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}], "containerStatuses": [
        {"name": "c", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": _ago(60)}}}]}),
        keep_status=True)
    s.patch("v1", "Pod", "up", {"spec": {"nodeName": "w1"}}, namespace="default")
    rows = _rows(_kubectl(twin, tmp_path, "get", "pods"))
    assert rows["init-running"][1:3] == ["0/1", "Init:0/1"]
    assert rows["init-crash"][2] == "Init:CrashLoopBackOff"
    assert rows["crash"][1:4] == ["0/1", "CrashLoopBackOff", "5 (10m ago)"]
    assert rows["done"][2] == "Completed"
    assert rows["up"][1:4] == ["1/1", "Running", "0"]
    wide = _rows(_kubectl(twin, tmp_path, "get", "pods", "-o", "wide"))
    assert wide["up"][5:] == ["10.244.1.5", "w1", "<none>", "<none>"]
    s.patch("v1", "Pod", "up", {"metadata": {"finalizers": ["x/y"]}}, namespace="default")
    s.delete("v1", "Pod", "up", "default")
    assert _rows(_kubectl(twin, tmp_path, "get", "pods"))["up"][2] == "Terminating"


@needs_kubectl
def test_nodes_storageclasses_volumes(twin, tmp_path):
    s = twin.store
    s.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1", "labels": {
        "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "storage"}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "10.10.0.11"},
                                 {"type": "Hostname", "address": "w1"}],
                   "nodeInfo": {"machineID": "m", "systemUUID": "u", "bootID": "b", "kubeProxyVersion": "",
                                "operatingSystem": "linux", "architecture": "amd64",
                                "kubeletVersion": "v1.34.1", "osImage": "Talos (v1.11.6)",
                                "kernelVersion": "6.12.57-talos", "containerRuntimeVersion": "containerd://2.1.5"}}},
             keep_status=True)
    out = _kubectl(twin, tmp_path, "get", "nodes", "-o", "wide")
    assert out.split("\n")[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                                          "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    w1 = _rows(out)["w1"]
    assert w1[1:3] == ["Ready,SchedulingDisabled", "storage,worker"]
    assert w1[4:] == ["v1.34.1", "10.10.0.11", "<none>", "Talos (v1.11.6)", "6.12.57-talos", "containerd://2.1.5"]
    s.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
        "name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "io.openebs.csi-mayastor", "allowVolumeExpansion": True,
        "volumeBindingMode": "WaitForFirstConsumer"})
    s.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "plain"},
              "provisioner": "example.com/x"})
    out = _kubectl(twin, tmp_path, "get", "sc")
    assert out.split("\n")[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                          "ALLOWVOLUMEEXPANSION", "AGE"]
    rows = _rows(out)
    assert rows["fast"][:5] == ["fast (default)", "io.openebs.csi-mayastor", "Delete", "WaitForFirstConsumer", "true"]
    assert rows["plain"][1:5] == ["example.com/x", "Delete", "Immediate", "false"]
    s.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c1", "namespace": "default"},
              "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                       "storageClassName": "plain"}})
    out = _kubectl(twin, tmp_path, "get", "pvc")
    assert re.split(r"\s{2,}", out.split("\n")[0]) == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES",
                                                       "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"]
    t = requests.get(twin.url + "/api/v1/namespaces/default/persistentvolumeclaims", headers=TABLE, timeout=5).json()
    assert t["rows"][0]["cells"][:7] == ["c1", "Pending", "", "", "", "plain", "<unset>"]


@needs_kubectl
def test_crd_printer_columns_like_the_apiserver(twin, tmp_path, upstream):
    twin.store.create(load_crd_file(upstream / "cilium/v1.18.10/crds/v2/ciliumloadbalancerippools.yaml"))
    pool = twin.store.create({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
                              "metadata": {"name": "lb-pool"},
                              "spec": {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.99"}]}})
    t = requests.get(twin.url + "/apis/cilium.io/v2/ciliumloadbalancerippools", headers=TABLE, timeout=5).json()
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Disabled", "Conflicting", "IPs Available", "Age"]
    # no status yet: the JSONPath finds nothing, the cell is null (kubectl prints <none>);
    # spec.disabled is defaulted to false by the CRD's schema
    assert t["rows"][0]["cells"][1:4] == [False, None, None]
    pool["status"] = {"conditions": [
        {"type": "cilium.io/IPsTotal", "status": "Unknown", "reason": "noreason", "message": "50",
         "lastTransitionTime": _ago(10)},
        {"type": "cilium.io/IPsAvailable", "status": "Unknown", "reason": "noreason", "message": "48",
         "lastTransitionTime": _ago(10)},
        {"type": "cilium.io/PoolConflict", "status": "False", "reason": "resolved", "message": "",
         "lastTransitionTime": _ago(10)}]}
    twin.store.update_status(pool)
    out = _kubectl(twin, tmp_path, "get", "ciliumloadbalancerippool")
    head, row = out.splitlines()[0], out.splitlines()[1]
    assert re.split(r"\s{2,}", head.strip()) == ["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"]
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[:4] == ["lb-pool", "false", "False", "48"] and re.fullmatch(r"\d+s", cells[4])
    # CRD without additionalPrinterColumns: Name + Age
    twin.store.create(load_crd_file(upstream / "cilium/v1.18.10/crds/v2alpha1/ciliuml2announcementpolicies.yaml"))
    names = [c["name"] for c in requests.get(
        twin.url + "/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies", headers=TABLE, timeout=5,
    ).json()["columnDefinitions"]]
    assert names == ["Name", "Age"]


def test_openapi_v3_documents(twin, upstream):
    root = requests.get(twin.url + "/openapi/v3", timeout=5).json()
    assert root["paths"]["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    doc = requests.get(twin.url + root["paths"]["apis/storage.k8s.io/v1"]["serverRelativeURL"], timeout=30).json()
    patch = doc["paths"]["/apis/storage.k8s.io/v1/storageclasses/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "storage.k8s.io", "kind": "StorageClass",
                                                        "version": "v1"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    sc = doc["components"]["schemas"]["io.k8s.api.storage.v1.StorageClass"]
    assert sc["properties"]["provisioner"]["type"] == "string" and "provisioner" in sc["required"]
    assert sc["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert requests.get(twin.url + "/openapi/v3/apis/cilium.io/v2", timeout=5).status_code == 404
    twin.store.create(load_crd_file(upstream / "cilium/v1.18.10/crds/v2/ciliumloadbalancerippools.yaml"))
    root = requests.get(twin.url + "/openapi/v3", timeout=5).json()
    doc = requests.get(twin.url + root["paths"]["apis/cilium.io/v2"]["serverRelativeURL"], timeout=30).json()
    pool = doc["components"]["schemas"]["io.cilium.v2.CiliumLoadBalancerIPPool"]
    assert pool["x-kubernetes-group-version-kind"] == [{"group": "cilium.io", "kind": "CiliumLoadBalancerIPPool",
                                                        "version": "v2"}]
    assert "blocks" in pool["properties"]["spec"]["properties"]


@needs_kubectl
def test_kubectl_create_and_apply_validate_on_the_server(twin, tmp_path):
    pvc = ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: test-pvc\nspec:\n"
           "  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(tmp_path / "cache")}

    def run(*args, stdin):
        return subprocess.run([KUBECTL, "--kubeconfig", str(twin.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60, env=env)
    bad = run("create", "-f", "-", stdin=pvc + "  storageClasName: x\n")
    assert bad.returncode == 1
    assert ('PersistentVolumeClaim in version "v1" cannot be handled as a PersistentVolumeClaim: strict decoding '
            'error: unknown field "spec.storageClasName"') in bad.stderr, bad.stderr
    ok = run("apply", "-f", "-", stdin=pvc)
    assert ok.returncode == 0 and "persistentvolumeclaim/test-pvc created" in ok.stdout, ok.stderr
    assert twin.core.read_namespaced_persistent_volume_claim("test-pvc", "default").spec.resources.requests == {
        "storage": "1Gi"}
    again = run("apply", "-f", "-", stdin=pvc)
    assert again.returncode == 0 and "persistentvolumeclaim/test-pvc unchanged" in again.stdout, again.stderr


def test_event_columns(twin):
    twin.store.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p1.abc", "namespace": "default"},
                       "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default"},
                       "reason": "FailedScheduling", "type": "Warning", "message": "0/3 nodes are available. ",
                       "firstTimestamp": _ago(30), "lastTimestamp": _ago(10), "count": 4,
                       "source": {"component": "default-scheduler"}})
    t = requests.get(twin.url + "/api/v1/namespaces/default/events", headers=TABLE, timeout=5).json()
    assert [c["name"] for c in t["columnDefinitions"] if c["priority"] == 0] == [
        "Last Seen", "Type", "Reason", "Object", "Message"]
    cells = t["rows"][0]["cells"]
    assert re.fullmatch(r"1\ds", cells[0]) and cells[1:7] == [
        "Warning", "FailedScheduling", "pod/p1", "", "default-scheduler", "0/3 nodes are available."]
    assert re.fullmatch(r"3\ds", cells[7]) and cells[8:] == [4, "p1.abc"]
