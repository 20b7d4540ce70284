"""Label selectors, field selectors, limit/continue."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def pods(twin):
    spec = {"containers": [{"name": "c", "image": "x:1"}]}
    for name, labels, node in [("a", {"app": "web", "tier": "fe"}, "n1"), ("b", {"app": "web"}, "n2"),
                               ("c", {"app": "db", "tier": "be"}, "n1"), ("d", {}, None)]:
        body = {"metadata": {"name": name, "labels": labels}, "spec": dict(spec)}
        if node:
            body["spec"]["nodeName"] = node
        twin.core.create_namespaced_pod("default", body)
    twin.core.patch_namespaced_pod_status("c", "default", {"status": {"phase": "Running"}})
    return twin.core


@pytest.mark.parametrize("sel,want", [
    ("app=web", "ab"), ("app==web", "ab"), ("app!=web", "cd"), ("app in (web,db)", "abc"),
    ("app notin (web)", "cd"), ("tier", "ac"), ("!tier", "bd"), ("app=web,tier", "a"), ("app in (db), !tier", ""),
])
def test_label_selectors(pods, sel, want):
    got = "".join(p.metadata.name for p in pods.list_namespaced_pod("default", label_selector=sel).items)
    assert got == want


@pytest.mark.parametrize("sel,want", [
    ("spec.nodeName=n1", "ac"), ("spec.nodeName!=n1", "bd"), ("status.phase=Running", "c"),
    ("status.phase==Pending,spec.nodeName=n1", "a"), ("metadata.name=b", "b"), ("metadata.namespace=default", "abcd"),
])
def test_field_selectors(pods, sel, want):
    got = "".join(p.metadata.name for p in pods.list_namespaced_pod("default", field_selector=sel).items)
    assert got == want


def test_bad_selectors(pods):
    with pytest.raises(ApiException) as ei:
        pods.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert ei.value.status == 400
    with pytest.raises(ApiException) as ei:
        pods.list_namespaced_pod("default", label_selector="a in b")
    assert ei.value.status == 400


def test_all_namespaces_and_paging(pods, twin):
    twin.core.create_namespace({"metadata": {"name": "other"}})
    twin.core.create_namespaced_pod("other", {"metadata": {"name": "z"},
                                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    everything = [p.metadata.name for p in pods.list_pod_for_all_namespaces().items]
    assert everything == ["a", "b", "c", "d", "z"]
    seen, token, pages = [], None, 0
    while True:
        page = pods.list_pod_for_all_namespaces(limit=2, _continue=token)
        seen += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 5 - len(seen)
    assert seen == everything and pages == 3
