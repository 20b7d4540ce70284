"""Watch through ``kubernetes.watch.Watch().stream``: events, resume, bookmarks, 410, selectors."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def _cm(name, labels=None, **data):
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def _later(fn, delay=0.2):
    t = threading.Timer(delay, fn)
    t.start()
    return t


def test_watch_streams_added_modified_deleted(twin):
    c = twin.core
    c.create_namespaced_config_map("default", _cm("pre"))

    def changes():
        c.create_namespaced_config_map("default", _cm("w", a="1"))
        c.patch_namespaced_config_map("w", "default", {"data": {"a": "2"}})
        c.delete_namespaced_config_map("w", "default")
    t = _later(changes)
    events = []
    for ev in watch.Watch().stream(c.list_namespaced_config_map, "default", timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            break
    t.join()
    assert events == [("ADDED", "pre"), ("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_resumes_from_resource_version(twin):
    c = twin.core
    rv = c.list_namespaced_config_map("default").metadata.resource_version
    c.create_namespaced_config_map("default", _cm("x"))
    c.create_namespaced_config_map("default", _cm("y"))
    seen = [(e["type"], e["object"].metadata.name) for e in
            watch.Watch().stream(c.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1)]
    assert seen == [("ADDED", "x"), ("ADDED", "y")]


def test_watch_label_selector_synthesises_added_and_deleted(twin):
    c = twin.core
    rv = c.list_namespaced_config_map("default").metadata.resource_version
    c.create_namespaced_config_map("default", _cm("m", {"team": "a"}))
    c.create_namespaced_config_map("default", _cm("n", {"team": "b"}))
    c.patch_namespaced_config_map("n", "default", {"metadata": {"labels": {"team": "a"}}})
    c.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"team": "c"}}})
    seen = [(e["type"], e["object"].metadata.name) for e in
            watch.Watch().stream(c.list_namespaced_config_map, "default", label_selector="team=a",
                                 resource_version=rv, timeout_seconds=1)]
    assert seen == [("ADDED", "m"), ("ADDED", "n"), ("DELETED", "m")]


def test_watch_bookmarks(twin):
    c = twin.core
    w = watch.Watch()
    types = []
    for ev in w.stream(c.list_namespaced_config_map, "default", allow_watch_bookmarks=True, timeout_seconds=1):
        types.append(ev["type"])
    assert "BOOKMARK" in types and w.resource_version == str(twin.store.resource_version)
    r = requests.get(twin.url + "/api/v1/namespaces/default/configmaps",
                     params={"watch": "true", "timeoutSeconds": "1"}, stream=True, timeout=5)
    assert all('"BOOKMARK"' not in line for line in r.iter_lines(decode_unicode=True))


def test_too_old_resource_version_is_410(twin):
    twin.store._history = type(twin.store._history)(maxlen=3)  # tiny history for the test
    c = twin.core
    for i in range(6):
        c.create_namespaced_config_map("default", _cm(f"c{i}"))
    r = requests.get(twin.url + "/api/v1/namespaces/default/configmaps",
                     params={"watch": "1", "resourceVersion": "2", "timeoutSeconds": "1"}, timeout=5)
    line = r.text.splitlines()[0]
    assert '"type":"ERROR"' in line and '"code":410' in line
    with pytest.raises(ApiException) as ei:
        list(watch.Watch().stream(c.list_namespaced_config_map, "default", resource_version="2", timeout_seconds=1))
    assert ei.value.status == 410


def test_legacy_watch_path_and_timeout(twin):
    t0 = time.monotonic()
    r = requests.get(twin.url + "/api/v1/watch/namespaces", params={"timeoutSeconds": "1"}, timeout=5)
    assert 0.9 < time.monotonic() - t0 < 3
    assert r.text.count('"ADDED"') == 4


def test_watch_custom_objects(twin, upstream):
    from falkit.twin.kube import load_crd_file

    twin.store.create(load_crd_file(upstream / "cilium/v1.19.4/crds/v2alpha1/ciliuml2announcementpolicies.yaml"))
    co = twin.custom
    _later(lambda: co.create_cluster_custom_object("cilium.io", "v2alpha1", "ciliuml2announcementpolicies", {
        "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "l2"},
        "spec": {"loadBalancerIPs": True, "interfaces": ["^eth[0-9]+"]}}))
    for ev in watch.Watch().stream(co.list_cluster_custom_object, "cilium.io", "v2alpha1",
                                   "ciliuml2announcementpolicies", timeout_seconds=2):
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "l2"
        break
    else:
        pytest.fail("no event")
