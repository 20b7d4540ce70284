"""The lab's design (falkit.model.design), derived from the spec alone: the seed's MAC scheme, the VMs,
services and io-engine cores of The Fal; each guest's storage NIC; LoadBalancer pool membership;
and that a spec object's design is derived once (design_of), so every reader shares one value."""

from __future__ import annotations

import gc

import pytest
from helpers import FAL, patched, write_yaml

from falkit.model import design as design_mod
from falkit.model.design import derive_design, design_of, mac_for
from falkit.model.spec import load_spec


def test_mac_scheme() -> None:
    assert mac_for("52:54:00:10:10", "10.10.0.11") == "52:54:00:10:10:11"
    assert mac_for("52:54:00:10:11", "10.11.0.5") == "52:54:00:10:11:05"
    with pytest.raises(ValueError, match="does not fit"):
        mac_for("52:54:00:10:10", "10.10.0.100")


def test_derived_design_matches_the_seed() -> None:
    design = derive_design(load_spec(FAL))
    w2 = design.vm("talos-worker-02")
    assert w2.vmid == 202 and w2.cores == 2 and w2.memory_gb == 9
    assert [(n.slot, n.bridge, n.mac, n.ip) for n in w2.nics] == [
        ("net0", "vmbr0", "52:54:00:10:10:12", "10.10.0.12"),
        ("net1", "vmbr1", "52:54:00:10:11:12", "10.11.0.12"),
    ]
    assert [(d.slot, d.storage, d.size_gb) for d in w2.disks] == [("scsi0", "local-lvm", 30), ("scsi1", "helford", 300)]
    assert [(s.name, s.ip) for s in design.services] == [("traefik", "10.10.0.80"), ("argocd-server", "10.10.0.50"), ("longhorn-frontend", None)]
    assert design.lb_pool_size == 50 and design.io_engine_cores == (1,)
    assert [c.hostname for c in design.containers] == ["plex"] and "truenas" not in [v.name for v in design.vms]


def test_storage_nic_is_the_guests_net1_on_the_storage_network() -> None:
    design = derive_design(load_spec(FAL))
    w1 = design.vm("talos-worker-01")
    assert (w1.storage_nic.slot, w1.storage_nic.bridge, w1.storage_nic.ip) == ("net1", "vmbr1", "10.11.0.11")
    assert w1.storage_ip == "10.11.0.11"
    assert design.control_plane.storage_nic is None and design.control_plane.storage_ip is None
    plex = design.containers[0]
    assert plex.storage_nic is not None and plex.storage_nic.network == "storage"
    row = next(r for r in design.rows() if r["name"] == "talos-worker-01")
    assert row["storage"] == "10.11.0.11 52:54:00:10:11:11 (vmbr1)"
    assert next(r for r in design.rows() if r["name"] == "talos-cp-01")["storage"] == ""


def test_lb_pool_membership() -> None:
    design = derive_design(load_spec(FAL))
    start, stop = design.lb_pool
    assert design.lb_pool_text == f"{start}-{stop}"
    assert design.in_lb_pool(start) and design.in_lb_pool(stop)
    before = start.rsplit(".", 1)[0] + "." + str(int(start.rsplit(".", 1)[1]) - 1)
    after = stop.rsplit(".", 1)[0] + "." + str(int(stop.rsplit(".", 1)[1]) + 1)
    assert not design.in_lb_pool(before) and not design.in_lb_pool(after)
    assert not design.in_lb_pool(None) and not design.in_lb_pool("") and not design.in_lb_pool("pending")
    assert design.service("traefik", "traefik").ip == "10.10.0.80" and design.service("x", "y") is None


def test_a_spec_object_gets_its_design_once(tmp_path) -> None:
    spec = load_spec(FAL)
    first = design_of(spec)
    assert design_of(spec) is first  # every reader of this spec shares the value
    assert first == derive_design(spec)
    other = load_spec(write_yaml(tmp_path, patched({"cilium.lb_pool.stop": "10.10.0.90"})))
    assert design_of(other) is not first and design_of(other).lb_pool_size == 41
    key = id(other)
    del other
    gc.collect()
    assert key not in design_mod._DESIGNS  # dropped with its spec
