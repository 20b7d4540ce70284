"""Upgrading a Helm release whose DaemonSet has no status yet (no controller has written one): the
twin's Helm applies the chart's DaemonSet again and the emulator, like a real apiserver, keeps the
old status on a main-resource write and does not validate it (kubernetes
pkg/registry/apps/daemonset/strategy.go: PrepareForUpdate "update is not allowed to set status";
status is validated only by the status strategy). Covers: the twin Helm's apply of cilium's
DaemonSet twice before any status (the upgrade used to fail with "status.currentNumberScheduled:
Required value"), the new spec stored and the status untouched; a status write is still validated;
and the same upgrade through the lab API on a lab whose cluster is not bootstrapped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from falkit.twin.kube import Store
from falkit.twin.kube.errors import ApiError
from falkit.twin.lab.charts import daemonset
from falkit.twin.lab.context import Release
from falkit.twin.lab.helm import apply_object


def _cilium_ds(values: dict) -> dict:
    rel = Release("kube-system", "cilium", "cilium/cilium", "1.18.10", values)
    image = "quay.io/cilium/cilium:v1.18.10" + ("-l2" if values.get("l2announcements") else "")
    obj = daemonset(rel, "cilium", "cilium", image, extra_labels={"k8s-app": "cilium"})
    obj["metadata"]["namespace"] = "kube-system"
    return obj


def test_helm_upgrades_a_daemonset_that_has_no_status_yet():
    ctx = SimpleNamespace(store=Store())  # no controller: the DaemonSet keeps the status it was created with
    apply_object(ctx, _cilium_ds({}))
    created = ctx.store.get("apps/v1", "DaemonSet", "cilium", "kube-system")
    # nothing has written one: the apiserver's serialisation of an empty DaemonSetStatus, whose four
    # counters are int32 without omitempty (k8s.io/api apps/v1 types.go DaemonSetStatus)
    assert created.get("status") == {"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                                     "numberMisscheduled": 0, "numberReady": 0}
    apply_object(ctx, _cilium_ds({"l2announcements": {"enabled": True}}))  # the upgrade
    ds = ctx.store.get("apps/v1", "DaemonSet", "cilium", "kube-system")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-l2")
    assert ds["metadata"]["generation"] == 2 and ds.get("status") == created.get("status")
    # the status subresource still validates what a controller writes
    with pytest.raises(ApiError) as exc:
        ctx.store.patch("apps/v1", "DaemonSet", "cilium", {"status": {"currentNumberScheduled": None}}, namespace="kube-system",
                        subresource="status", field_manager="daemonset-controller")
    assert exc.value.code == 422 and "status.currentNumberScheduled: Required value" in str(exc.value)


def test_upgrading_cilium_through_the_lab_api_on_an_unbooted_cluster(lab_unbooted):
    lab = lab_unbooted
    lab.lab.helm_upsert("kube-system", "cilium", "cilium/cilium", "1.18.10", {"kubeProxyReplacement": True})
    rel = lab.lab.helm_upsert("kube-system", "cilium", "cilium/cilium", "1.18.10",
                              {"kubeProxyReplacement": True, "l2announcements": {"enabled": True}})
    assert rel["revision"] == 2 and rel["status"] == "deployed"
    assert lab.ctx.cilium_config().l2_announcements is True
