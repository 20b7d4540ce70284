"""Lab faults through POST/DELETE /lab/faults, each seen the way a client sees it: Kubernetes API
500/429/503 bursts through the official client, a node going NotReady (Ready=Unknown), a Talos
apply error, DiskPool/io-engine faults recorded for their controllers; unknown kinds rejected."""

from __future__ import annotations

import lab_fixtures
import pytest
from kubernetes.client.rest import ApiException

from falkit.twin.lab.client import LabApiError

lab_before = lab_fixtures.lab_before  # the fixture


def test_kube_http_error_burst(lab_before):
    lab = lab_before
    lab.lab.fault("kube_http_error", status=500, count=2, path="/api/v1/namespaces$")
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            lab.core.list_namespace()
        assert exc.value.status == 500
    assert lab.core.list_namespace().items
    # urllib3 (under the official client) retries a 429 that carries Retry-After, 3 times by default:
    # one throttled answer is absorbed, a longer burst surfaces.
    lab.lab.fault("kube_http_error", status=429, count=1, path="/nodes$", retry_after=0)
    assert lab.core.list_node().kind == "NodeList"
    lab.lab.fault("kube_http_error", status=429, count=10, path="/nodes$", retry_after=0)
    with pytest.raises(ApiException) as exc:
        lab.core.list_node()
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "0"
    assert lab.lab.faults()["kube_rules"][0]["remaining"] == 6


def test_kube_api_down_and_clear(lab_before):
    lab = lab_before
    lab.lab.fault("kube_api_down")
    with pytest.raises(ApiException) as exc:
        lab.core.list_namespace()
    assert exc.value.status == 503
    assert lab.lab.faults()["kube_api_down"] is True
    lab.lab.clear_faults()
    assert lab.core.list_namespace().items


def test_node_not_ready(lab_before):
    lab = lab_before

    def ready():
        node = lab.core.read_node("talos-worker-01")
        return next(c for c in node.status.conditions if c.type == "Ready")

    lab.wait(lambda: lab.store.try_get("v1", "Node", "talos-worker-01"), what="node registered")
    lab.wait(lambda: ready().status == "True", what="Ready")
    lab.lab.fault("node_not_ready", node="talos-worker-01")
    lab.wait(lambda: ready().status == "Unknown", what="Unknown after the fault")
    assert ready().message == "Kubelet stopped posting node status."
    taints = {t.key for t in lab.core.read_node("talos-worker-01").spec.taints}
    assert "node.kubernetes.io/unreachable" in taints
    assert lab.lab.clear_faults() == 1
    lab.wait(lambda: ready().status == "True", what="Ready again after clearing")


def test_talos_apply_error(lab_before):
    lab = lab_before
    lab.lab.fault("talos_apply_error", node="10.30.0.11", message="rpc error: code = Internal desc = disk full")
    cfg = lab.lab.call("GET", "/talos/config", params={"node": "10.30.0.11"})["config"]
    with pytest.raises(LabApiError) as exc:
        lab.lab.talos_apply("10.30.0.11", cfg)
    assert exc.value.status == 500 and "disk full" in str(exc.value)
    lab.lab.clear_faults()
    assert lab.lab.talos_apply("10.30.0.11", cfg)["reboot"] is False


def test_controller_faults_recorded_and_unknown_kind_rejected(lab_before):
    lab = lab_before
    lab.lab.fault("diskpool_degraded", pool="pool-talos-worker-01")
    lab.lab.fault("io_engine_crash", node="talos-worker-01")
    got = lab.lab.faults()
    assert got["diskpool_degraded"] == ["pool-talos-worker-01"] and got["io_engine_crash"] == ["talos-worker-01"]
    assert lab.ctx.faults.io_engine_crash == {"talos-worker-01"}
    with pytest.raises(LabApiError) as exc:
        lab.lab.fault("meteor_strike")
    assert exc.value.status == 400
    with pytest.raises(LabApiError) as exc:
        lab.lab.fault("node_not_ready")
    assert exc.value.status == 400 and "needs node" in str(exc.value)
