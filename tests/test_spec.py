"""The lab spec: strict validation with file:line:column and field paths for every mistake, and
that The Fal and the second example load."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FAL, ROOT

from falkit.model.design import derive_design
from falkit.model.errors import SpecError
from falkit.model.spec import load_spec, parse_spec

TEXT = FAL.read_text()


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    return text.count("\n", 0, idx) + 1


def _err(text: str) -> SpecError:
    with pytest.raises(SpecError) as exc:
        parse_spec(text, "fal.yaml")
    return exc.value


def test_fal_loads() -> None:
    spec = load_spec(FAL)
    assert spec.host.cpu.threads == 16 and spec.host.memory_gb == 32
    assert [w.storage_ip for w in spec.cluster.workers] == ["10.11.0.11", "10.11.0.12", "10.11.0.13"]
    assert spec.truenas and spec.truenas.enabled is False
    assert spec.secrets.proxmox_token.env == "FALKIT_PVE_TOKEN"


@pytest.mark.parametrize("path", sorted((ROOT / "parameters" / "examples").glob("*.yaml")))
def test_examples_load(path: Path) -> None:
    spec = load_spec(path)
    assert derive_design(spec).vms


def test_ip_outside_subnet_names_line_and_path() -> None:
    text = TEXT.replace("storage_ip: 10.11.0.12", "storage_ip: 10.12.0.12")
    (p,) = _err(text).problems
    assert p.path == "cluster.workers[1].storage_ip"
    assert p.line == _line_of(text, "storage_ip: 10.12.0.12")
    assert "outside its subnet 10.11.0.0/24" in p.message
    assert str(p).startswith(f"fal.yaml:{p.line}:")


def test_wrong_type() -> None:
    text = TEXT.replace("  memory_gb: 32", '  memory_gb: "32"')
    (p,) = _err(text).problems
    assert p.path == "host.memory_gb" and "expected int" in p.message and p.line == _line_of(text, 'memory_gb: "32"')


def test_unknown_key_is_an_error() -> None:
    text = TEXT.replace("  l2_announcements: true", "  l2_anouncements: true")
    (p,) = _err(text).problems
    assert p.path == "cilium.l2_anouncements" and "unknown field" in p.message


def test_duplicate_key() -> None:
    text = TEXT.replace("      vmid: 202\n", "      vmid: 202\n      vmid: 212\n")
    (p,) = _err(text).problems
    assert p.path == "cluster.workers[1].vmid" and "duplicate key" in p.message
    assert p.line == _line_of(text, "vmid: 212")


def test_malformed_yaml() -> None:
    text = TEXT.replace("stop: 10.10.0.99", "stop: [10.10.0.99")
    (p,) = _err(text).problems
    assert "malformed YAML" in p.message and p.line is not None


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        ("vmid: 203", "vmid: 202", "cluster.workers[2].vmid", "duplicate VMID 202"),
        ("- name: talos-worker-03", "- name: talos-worker-02", "cluster.workers[2].name", "duplicate name"),
        ("ip: 10.10.0.13", "ip: 10.10.0.12", "cluster.workers[2].ip", "duplicate IP 10.10.0.12"),
        ("gateway: 10.11.0.1", "gateway: 10.12.0.1", "networks.storage.gateway", "outside 10.11.0.0/24"),
        ("ip: 10.10.0.10", "ip: 10.10.0.300", "cluster.control_plane[0].ip", "expected an IPv4 address"),
        ("cidr: 10.11.0.0/24", "cidr: 10.11.0.1/24", "networks.storage.cidr", "CIDR"),
        ('mac_prefix: "52:54:00:10:11"', 'mac_prefix: "53:54:00:10:11"', "networks.storage.mac_prefix", "multicast"),
        ("fs_type: ext4", "fs_type: zfs", "mayastor.fs_type", "expected"),
        ("proxmox_token: {env: FALKIT_PVE_TOKEN}", "proxmox_token: {env: X, file: /y}", "secrets.proxmox_token", "exactly one"),
        ("    stop: 10.10.0.99", "    stop: 10.10.0.40", "cilium.lb_pool.stop", "before its start"),
    ],
)
def test_bad_values(old: str, new: str, path: str, words: str) -> None:
    assert old in TEXT
    problems = _err(TEXT.replace(old, new, 1)).problems
    match = [p for p in problems if p.path == path]
    assert match, [str(p) for p in problems]
    assert words in match[0].message
    assert match[0].line is not None


def test_all_problems_reported_together() -> None:
    text = TEXT.replace("  memory_gb: 32", '  memory_gb: "32"').replace("  l2_announcements: true", "  l2_anouncements: true")
    assert {p.path for p in _err(text).problems} == {"host.memory_gb", "cilium.l2_anouncements"}


def test_secret_value_is_not_accepted() -> None:
    text = TEXT.replace("proxmox_token: {env: FALKIT_PVE_TOKEN}", "proxmox_token: PVEAPIToken=root@pam!x=abc")
    (p,) = _err(text).problems
    assert p.path == "secrets.proxmox_token"

