"""The operator hand-off (falkit.steps.handoff): the DHCP, DNS and tunnel CSVs match the plan — every
MAC/IP pair of every VM NIC and the Plex container is compared with the design — observed Service
IPs win over planned ones, and the files land in the run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from falkit.model.design import design_of
from falkit.model.spec import load_spec
from falkit.steps.handoff import dhcp_rows, dns_rows, tunnel_rows, write_handoff

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "parameters" / "fal.yaml")


def read(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_dhcp_csv_matches_every_mac_ip_pair_of_the_design(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_RUN_DIR", str(tmp_path))
    paths = write_handoff(None, spec)
    assert paths["dhcp"] == tmp_path / "handoff" / "dhcp.csv"
    rows = read(paths["dhcp"])
    design = design_of(spec)
    want = {(v.name, n.mac, n.ip) for v in design.vms for n in v.nics} | \
           {(c.hostname, n.mac, n.ip) for c in design.containers for n in c.nics}
    got = {(r["hostname"], r["mac"], r["ip"]) for r in rows}
    assert got == want and len(rows) == len(want)
    # The Fal: 1 CP (1 NIC) + 3 workers (2 NICs) + Plex (2 NICs) = 9 reservations
    assert len(rows) == 9
    assert ("talos-worker-02", "52:54:00:10:11:12", "10.11.0.12") in got
    assert ("plex", "52:54:00:10:10:30", "10.10.0.30") in got


def test_dns_rows_planned_and_observed(spec):
    rows = {r["name"]: r for r in dns_rows(spec)}
    assert rows["traefik.fal.home.arpa"]["value"] == "10.10.0.80"
    assert rows["argocd.fal.home.arpa"]["value"] == "10.10.0.50"  # auto: lowest free pool address
    assert rows["argocd.fal.home.arpa"]["source"] == "planned"
    seen = {r["name"]: r for r in dns_rows(spec, observed={("argocd", "argocd-server"): "10.10.0.51"})}
    assert seen["argocd.fal.home.arpa"]["value"] == "10.10.0.51" and seen["argocd.fal.home.arpa"]["source"] == "observed"
    assert all(r["action"] == "update" for r in rows.values() if r["source"] != "plex container")


def test_tunnel_only_for_tunnelled_services_that_move(spec, tmp_path):
    rows = tunnel_rows(spec)
    assert rows == [{"hostname": "traefik.fal.home.arpa", "service": "traefik/traefik",
                     "old_origin": "https://10.30.0.100", "new_origin": "https://10.10.0.80"},
                    # issue 14: Plex moves to its container (10.10.0.30), plain HTTP on 32400
                    {"hostname": "plex.fal.home.arpa", "service": "lxc/400 (plex)",
                     "old_origin": "the Kubernetes Plex", "new_origin": "http://10.10.0.30:32400"}]
    paths = write_handoff(tmp_path, spec)
    assert read(paths["tunnel"]) == rows
    assert {r["name"] for r in read(paths["dns"])} == {"traefik.fal.home.arpa", "argocd.fal.home.arpa",
                                                      "plex.fal.home.arpa"}


def test_write_handoff_needs_a_directory(spec, monkeypatch):
    monkeypatch.delenv("FALKIT_RUN_DIR", raising=False)
    with pytest.raises(ValueError):
        write_handoff(None, spec)


def test_dhcp_rows_follow_the_spec(spec):
    design = design_of(spec)
    assert [r["mac"] for r in dhcp_rows(spec, design) if r["hostname"] == "talos-cp-01"] == ["52:54:00:10:10:10"]
