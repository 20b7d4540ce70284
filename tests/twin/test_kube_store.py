"""The store's Python API (for in-process controllers), faults, snapshots and the lab process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from falkit.twin.kube import ApiError, Store


def test_python_api_crud_and_subscribe():
    store = Store()
    events = []
    unsubscribe = store.subscribe(lambda t, obj, old: events.append((t, obj["metadata"]["name"])))
    made = store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
    made["data"] = {"x": "1"}  # copies: does not touch the store
    assert "data" not in store.get("v1", "ConfigMap", "a", "default")
    store.patch("v1", "configmaps", "a", {"data": {"x": "2"}}, namespace="default")
    store.update({**store.get("v1", "ConfigMap", "a", "default"), "data": {"x": "3"}})
    assert store.list("v1", "ConfigMap", "default", field_selector="metadata.name=a")["items"][0]["data"] == {"x": "3"}
    store.delete("v1", "ConfigMap", "a", "default")
    unsubscribe()
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}})
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert store.try_get("v1", "ConfigMap", "a", "default") is None
    with pytest.raises(ApiError) as ei:
        store.get("v1", "ConfigMap", "a", "default")
    assert ei.value.code == 404


def test_keep_status_and_update_status():
    store = Store()
    store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                  "spec": {"containers": [{"name": "c", "image": "i:1"}]}, "status": {"phase": "Running"}},
                 keep_status=True)
    pod = store.get("v1", "Pod", "p", "default")
    assert pod["status"]["phase"] == "Running"
    pod["status"]["phase"] = "Succeeded"
    store.update_status(pod)
    assert store.get("v1", "Pod", "p", "default")["status"]["phase"] == "Succeeded"


def test_async_watch_from_python():
    async def run():
        store = Store()
        seen = []

        async def consume():
            async for etype, obj in store.watch("v1", "ConfigMap", "default", timeout=1):
                seen.append((etype, obj["metadata"]["name"]))
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})
        store.delete("v1", "ConfigMap", "x", "default")
        await task
        return seen
    assert asyncio.run(run()) == [("ADDED", "x"), ("DELETED", "x")]


def test_dump_and_load_roundtrip(twin, upstream):
    from falkit.twin.kube import diskpool_crd

    twin.store.create(diskpool_crd())
    twin.core.create_namespaced_service("default", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    twin.core.create_namespaced_pod("default", {"metadata": {"name": "p"},
                                                "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    twin.store.set_pod_log("default", "p", "hello\n")
    snap = json.loads(json.dumps(twin.store.dump()))
    rv = twin.store.resource_version
    fresh = Store()
    fresh.load(snap)
    assert fresh.resource_version == rv
    assert fresh.get("v1", "Service", "s", "default")["spec"]["clusterIP"]
    assert fresh.pod_log("default", "p") == "hello\n"
    assert fresh.list("openebs.io/v1beta2", "DiskPool")["items"] == []  # CRD restored => type served
    twin.core.delete_namespaced_service("s", "default")
    twin.store.load(snap)
    assert twin.core.read_namespaced_service("s", "default").spec.cluster_ip
    made = twin.core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    assert int(made.metadata.resource_version) > rv


def test_faults_fail_next_and_retry_after(twin):
    twin.store.faults.fail_next(2, status=500, path=r"/configmaps")
    for _ in range(2):
        with pytest.raises(ApiException) as ei:
            twin.core.list_namespaced_config_map("default")
        assert ei.value.status == 500
    assert twin.core.list_namespaced_config_map("default").items == []
    twin.store.faults.fail_next(1, status=429, retry_after=3, method="POST")
    twin.core.list_namespaced_config_map("default")  # GET: unaffected
    with pytest.raises(ApiException) as ei:
        twin.core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    assert ei.value.status == 429 and ei.value.headers["Retry-After"] == "3"
    assert json.loads(ei.value.body)["reason"] == "TooManyRequests"


def test_faults_api_down(twin):
    twin.store.faults.api_down()
    with pytest.raises(ApiException) as ei:
        client.VersionApi(twin.api).get_code()
    assert ei.value.status == 503
    assert requests.get(twin.url + "/lab", timeout=5).status_code == 200  # lab API stays up
    twin.store.faults.api_up()
    assert client.VersionApi(twin.api).get_code().major == "1"


def test_lab_process_subprocess(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "falkit.twin.lab_process", "--state-dir", str(tmp_path), "--emulator-only"],
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        info_path = tmp_path / "lab.json"
        deadline = time.monotonic() + 20
        while not info_path.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        info = json.loads(info_path.read_text())
        assert info["pid"] == proc.pid and info["kube_server"].startswith("https://127.0.0.1:")
        assert info["lab_api"].startswith("http://127.0.0.1:") and info["lab_api"].endswith("/lab")
        with config.new_client_from_config(config_file=info["kubeconfig"]) as api:  # token + CA, 0600
            assert len(client.CoreV1Api(api).list_namespace().items) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_lab_process_refuses_non_loopback():
    from falkit.twin.lab_process import LabProcess

    with pytest.raises(ValueError):
        asyncio.run(LabProcess().start("0.0.0.0", 0))
