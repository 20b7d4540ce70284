"""The "before" state: the pre-migration lab on 10.30.0.0/24 — Talos configs in the old style,
bootstrapped, Helm releases (cilium without L2 announcements, metallb, longhorn, argo-cd), the
MetalLB pool and L2Advertisement, LoadBalancer Services requesting their old IPs, media apps with
Longhorn PVCs bound and a checksum per volume; and a snapshot that restores all of it."""

from __future__ import annotations

import lab_fixtures
from lab_fixtures import start_lab

from falkit.twin.lab.before import checksum

lab_before = lab_fixtures.lab_before  # the fixture


def test_before_state_objects(lab_before):
    lab = lab_before
    rels = {(r["namespace"], r["name"]): r for r in lab.lab.call("GET", "/helm/releases")["releases"]}
    assert set(rels) == {("kube-system", "cilium"), ("metallb-system", "metallb"),
                         ("longhorn-system", "longhorn"), ("argocd", "argocd")}
    assert lab.ctx.cilium_config().kube_proxy_replacement is False
    assert lab.ctx.cilium_config().l2_announcements is False
    pools = lab.custom.list_namespaced_custom_object("metallb.io", "v1beta1", "metallb-system", "ipaddresspools")
    assert pools["items"][0]["spec"]["addresses"] == ["10.30.0.65-10.30.0.100"]
    assert lab.custom.list_namespaced_custom_object("metallb.io", "v1beta1", "metallb-system", "l2advertisements")["items"]
    want = {("traefik", "traefik"): "10.30.0.100", ("argocd", "argocd-server"): "10.30.0.80",
            ("longhorn-system", "longhorn-frontend"): "10.30.0.70"}
    for (ns, name), ip in want.items():
        svc = lab.core.read_namespaced_service(name, ns)
        assert svc.spec.type == "LoadBalancer"
        assert svc.metadata.annotations["metallb.universe.tf/loadBalancerIPs"] == ip
    for claim in ("plex-config", "sonarr-config", "radarr-config"):
        pvc = lab.core.read_namespaced_persistent_volume_claim(claim, "media")
        assert pvc.status.phase == "Bound" and pvc.spec.storage_class_name == "longhorn"
        pv = lab.core.read_persistent_volume(pvc.spec.volume_name)
        assert pv.spec.csi.driver == "driver.longhorn.io" and pv.status.phase == "Bound"
        assert lab.ctx.volumes[pv.metadata.name].checksum == checksum("media", claim)
    assert lab.apps.read_namespaced_deployment("plex", "media").spec.template.spec.volumes[0] \
        .persistent_volume_claim.claim_name == "plex-config"
    assert lab.lab.talos_read("10.30.0.11", "/proc/modules").split()[0] == "iscsi_tcp"
    assert "HugePages_Total:       0\n" in lab.lab.talos_read("10.30.0.11", "/proc/meminfo")
    lab.wait(lambda: {n.metadata.name for n in lab.core.list_node().items} == {"talos-cp-01", "talos-worker-01"},
             what="before-state nodes")
    lab.wait(lambda: all(c.status == "True" for n in lab.core.list_node().items for c in n.status.conditions
                         if c.type == "Ready"), what="before-state nodes Ready")


def test_snapshot_restores_lab_and_objects(lab_before, tmp_path):
    path = lab_before.lab.snapshot(str(tmp_path / "snap.json"))
    lab2, stop = start_lab(tmp_path / "again", "empty", pve_state="before", restore=path)
    try:
        assert lab2.ctx.bootstrapped
        assert {r["name"] for r in lab2.lab.state()["releases"]} == {"cilium", "metallb", "longhorn", "argocd"}
        assert lab2.core.read_namespaced_persistent_volume_claim("plex-config", "media").status.phase == "Bound"
        assert lab2.ctx.talos_nodes["10.30.0.10"].machine_type == "controlplane"
    finally:
        stop()
