"""The emulator's per-collection indexes (issue 17: selector lists without scanning the collection).

Covers: the label / namespace / owner indexes stay in step with the objects through create, label
patches, label removal, replace, finalizer-delayed delete and delete; list and watch with label
selectors (``=``, ``in``, existence, negations, several ANDed) and ``metadata.name`` field selectors
through the official client give exactly what a brute-force filter of the full list gives; the
candidate set a selector list looks at is the index's, not the collection; garbage collection finds
dependents through the owner index.
"""

from __future__ import annotations

import random

from falkit.twin.kube.selectors import parse_label_selector

SELECTORS = ["app=a1", "app in (a1,a2)", "app=a1,tier in (x)", "tier", "!tier", "app!=a1", "app notin (a1,a3)",
             "app=a2,!tier", "app=nope", "tier=x,app"]


def _brute(items, sel):
    m = parse_label_selector(sel)
    return sorted(i.metadata.name for i in items if m is None or m(i.metadata.labels or {}))


def _check_indexes(store, rt):
    coll = store._coll(rt)
    want_label, want_ns = {}, {}
    for key, obj in coll.items():
        for k, v in (obj["metadata"].get("labels") or {}).items():
            want_label.setdefault((k, v), set()).add(key)
        want_ns.setdefault(key[0], set()).add(key)
    assert coll.by_label == want_label
    assert coll.by_ns == want_ns


def test_selector_lists_match_brute_force_through_changes(twin):
    rnd = random.Random(7)
    rt = twin.store.registry.get("", "v1", "configmaps")
    core = twin.core
    core.create_namespace({"metadata": {"name": "other"}})
    names = []
    for i in range(120):
        labels = {"app": f"a{rnd.randrange(4)}"}
        if rnd.random() < 0.5:
            labels["tier"] = "x"
        ns = "default" if i % 3 else "other"
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}", "labels": labels}})
        names.append((ns, f"c{i}"))
    for ns, n in rnd.sample(names, 40):  # relabel, drop labels, replace
        r = rnd.random()
        if r < 0.4:
            core.patch_namespaced_config_map(n, ns, {"metadata": {"labels": {"app": f"a{rnd.randrange(4)}"}}})
        elif r < 0.7:
            core.patch_namespaced_config_map(n, ns, {"metadata": {"labels": {"tier": None}}})
        else:
            cur = core.read_namespaced_config_map(n, ns)
            cur.metadata.labels = {"app": "a2"}
            core.replace_namespaced_config_map(n, ns, cur)
    for ns, n in rnd.sample(names, 30):
        core.delete_namespaced_config_map(n, ns)
    _check_indexes(twin.store, rt)
    every_default = core.list_namespaced_config_map("default").items
    every = core.list_config_map_for_all_namespaces().items
    for sel in SELECTORS:
        got = [i.metadata.name for i in core.list_namespaced_config_map("default", label_selector=sel).items]
        assert got == _brute(every_default, sel), sel
        got_all = [i.metadata.name for i in core.list_config_map_for_all_namespaces(label_selector=sel).items]
        assert sorted(got_all) == _brute(every, sel), sel
    one = every_default[0].metadata.name
    got = core.list_namespaced_config_map("default", field_selector=f"metadata.name={one}").items
    assert [i.metadata.name for i in got] == [one]
    assert core.list_namespaced_config_map("other", field_selector=f"metadata.name={one}").items == []
    got = core.list_namespaced_config_map("default", field_selector=f"metadata.name!={one}").items
    assert len(got) == len(every_default) - 1


def test_selector_list_looks_only_at_index_candidates(twin):
    rt = twin.store.registry.get("", "v1", "configmaps")
    for i in range(200):
        twin.store.create({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": f"c{i}", "namespace": "default", "labels": {"app": f"a{i % 50}"}}})
    match, candidates = twin.store._selection(rt, "default", "app=a7,tier notin (y)", None)
    keys = candidates(twin.store._coll(rt))
    assert keys == {("default", f"c{i}") for i in range(7, 200, 50)}
    assert [o["metadata"]["name"] for o in twin.store.list("v1", "ConfigMap", "default",
                                                           label_selector="app=a7")["items"]] == [
        "c107", "c157", "c57", "c7"]


def test_finalizer_delete_and_gc_keep_indexes(twin):
    rt = twin.store.registry.get("", "v1", "configmaps")
    owner = twin.store.create({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "owner", "namespace": "default", "labels": {"role": "owner"}}})
    for i in range(3):
        twin.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"dep{i}", "namespace": "default", "labels": {"role": "dep"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                 "uid": owner["metadata"]["uid"]}]}})
    twin.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "held", "namespace": "default", "labels": {"role": "held"}, "finalizers": ["x/y"]}})
    twin.store.delete("v1", "ConfigMap", "held", "default")
    assert [o["metadata"]["name"] for o in twin.store.list("v1", "ConfigMap", "default",
                                                           label_selector="role=held")["items"]] == ["held"]
    twin.store.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, namespace="default")
    assert twin.store.list("v1", "ConfigMap", "default", label_selector="role=held")["items"] == []
    assert twin.store._coll(rt).by_owner[owner["metadata"]["uid"]] == {("default", f"dep{i}") for i in range(3)}
    twin.store.delete("v1", "ConfigMap", "owner", "default")
    assert twin.store.list("v1", "ConfigMap", "default", label_selector="role")["items"] == []
    assert owner["metadata"]["uid"] not in twin.store._coll(rt).by_owner
    _check_indexes(twin.store, rt)
