"""Hostile and mistaken parameters files through `falkit plan` (a CLI subprocess, as the operator
runs it) and through the 00-preflight facade (issue 16 items 1-5).

Covers:
- loader limits: an alias bomb ("billion laughs") and a self-referencing anchor stop fast with one
  line naming file:line; a file over 1 MiB is refused before parsing; nesting deeper than the
  limit is refused; a huge value is echoed only as a short excerpt;
- bad bytes: non-UTF-8, a NUL byte, 50,000 levels of nesting: one error with file:line:column,
  never a traceback;
- mistakes accepted before, now errors (exit 2) naming file:line:column and the field path:
  hugepages that do not fit a worker's RAM, a node IP equal to the network or broadcast address,
  two services with the same old_ip, duplicate IPs in previous.nodes, the old MetalLB pool
  overlapping the Cilium pool, a platform_path leaving the checkout, an install_disk that is not
  a device path;
- cross-field findings (pool overlapping a node IP, pool in another subnet, duplicate MACs, a
  service IP outside the pool or equal to a node IP, replicas > workers, a missing io-engine core,
  RAM over the host, an unknown Talos version, ...) name file:line:column and the field path, in
  `falkit plan` and in 00-preflight's findings (and its result.json); the line named really holds
  that field;
- an inline secret (or a token-looking value) is never echoed by `falkit plan`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FAL, ROOT, patched, write_yaml

pytest_plugins = ("test_runbook_support",)  # the session twin for the 00-preflight facade

PLACE = re.compile(r"(?P<file>\S+\.yaml):(?P<line>\d+):(?P<col>\d+):? (?P<field>[A-Za-z_][\w.\[\]]*)")


def plan(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", "plan", str(path), *extra], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def places(text: str) -> dict[str, tuple[str, int, int]]:
    """field path -> (file, line, column) for every place named in ``text``."""
    return {m["field"].rstrip(":"): (m["file"], int(m["line"]), int(m["col"])) for m in PLACE.finditer(text)}


def assert_points_at(path: Path, text: str, field: str) -> None:
    """``text`` names ``path:line:col field`` and that line of the file holds the field's key."""
    found = places(text)
    assert field in found, f"{field} not named with file:line:column in:\n{text}"
    file, line, col = found[field]
    assert Path(file).name == path.name
    src = path.read_text().splitlines()[line - 1]
    key = re.findall(r"[A-Za-z_]\w*", field)[-1]
    assert key in src[col - 1:] or src[col - 1:].lstrip().startswith("-"), (field, line, col, src)


# -------------------------------------------------------------------------------------------------
# 1. resource limits


def _bomb(levels: int = 9) -> str:
    out = "lab: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']\n"
    prev = "a"
    for i in range(levels):
        name = f"b{i}"
        out += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return out


def test_alias_bomb_refused_fast_with_file_and_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    t0 = time.monotonic()
    r = plan(bomb)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr
    line = next(x for x in r.stderr.splitlines() if "100,000 values" in x)
    assert re.search(rf"{re.escape(str(bomb))}:\d+:\d+: ", line)


def test_self_referencing_anchor_refused(tmp_path):
    f = tmp_path / "loop.yaml"
    f.write_text("lab: &x [*x]\n")
    r = plan(f)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{f}:1:" in r.stderr and "levels deep" in r.stderr


def test_file_over_one_mib_refused_before_parsing(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(FAL.read_text() + "#" + "x" * (1024 * 1024) + "\n")
    t0 = time.monotonic()
    r = plan(big)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2
    assert f"{big}:1: the file is {big.stat().st_size:,} bytes, over the loader's limit of 1,048,576" in r.stderr


def test_nesting_deeper_than_the_limit_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("lab:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 100)) + "  " * 100 + "v: 1\n")
    r = plan(deep)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert re.search(rf"{re.escape(str(deep))}:\d+:\d+: nested more than 64 levels deep", r.stderr)


def test_a_huge_value_is_echoed_as_a_short_excerpt(tmp_path):
    f = write_yaml(tmp_path, patched({"cluster.workers[0].ip": "9" * 200_000}))
    r = plan(f)
    assert r.returncode == 2
    assert "cluster.workers[0].ip" in r.stderr and "200,000 characters" in r.stderr
    assert len(r.stderr) < 2000, len(r.stderr)


# -------------------------------------------------------------------------------------------------
# 2. bad bytes and nesting: no tracebacks


LAB_LINE = next(i for i, x in enumerate(FAL.read_text().splitlines(), 1) if x.startswith("lab:"))


@pytest.mark.parametrize("content, where, words", [
    (FAL.read_bytes().replace(b"lab: the-fal", b"lab: the-f\xe4l"), f"{LAB_LINE}:11", "byte 0xe4 is not UTF-8"),
    (FAL.read_bytes().replace(b"lab: the-fal", b"lab: the\x00fal"), f"{LAB_LINE}:9", "a NUL byte"),
    (FAL.read_bytes().replace(b"lab: the-fal", b"lab: the\x07fal"), f"{LAB_LINE}:9", "control character U+0007"),
    (b"lab: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "1:", "nested more than 64 levels deep"),
], ids=["latin-1", "nul", "bell", "50000-levels"])
def test_bad_bytes_give_one_error_with_line_and_column(tmp_path, content, where, words):
    f = tmp_path / "bad.yaml"
    f.write_bytes(content)
    r = plan(f)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Error:" not in r.stderr
    assert f"{f}:{where}" in r.stderr and words in r.stderr, r.stderr


# -------------------------------------------------------------------------------------------------
# 3. accepted before, errors now


WRONG = [
    ({"mayastor.hugepages_2mi": 5000}, "mayastor.hugepages_2mi", "more than worker talos-worker-01's 9 GiB"),
    ({"cluster.workers[0].ip": "10.10.0.0"}, "cluster.workers[0].ip", "is the network address of 10.10.0.0/24"),
    ({"cluster.workers[1].storage_ip": "10.11.0.255"}, "cluster.workers[1].storage_ip", "broadcast address"),
    ({"services[1].old_ip": "10.30.0.100"}, "services[1].old_ip", "also the old IP of services[0]"),
    ({"previous.nodes[1].ip": "10.30.0.10"}, "previous.nodes[1].ip", "duplicate IP 10.30.0.10"),
    ({"previous.metallb_pool": {"start": "10.10.0.90", "stop": "10.10.0.120"}}, "cilium.lb_pool.start", "overlaps the old MetalLB pool"),
    ({"gitops.platform_path": "../../../../etc"}, "gitops.platform_path", "inside the checkout"),
    ({"talos.install_disk": "/dev/sda; reboot"}, "talos.install_disk", "expected a device path"),
]


@pytest.mark.parametrize("patch, field, words", WRONG, ids=[w[1] + "-" + w[2][:12] for w in WRONG])
def test_wrong_values_are_refused_with_their_place(tmp_path, patch, field, words):
    f = write_yaml(tmp_path, patched(patch))
    r = plan(f)
    assert r.returncode == 2, r.stdout[-2000:]
    assert words in r.stderr and "nothing was changed" in r.stderr
    assert_points_at(f, r.stderr, field)


# -------------------------------------------------------------------------------------------------
# 4. findings with a place


FINDINGS = [
    ({"cilium.lb_pool.start": "10.10.0.11"}, "addr.pool-overlaps-host", "cluster.workers[0].ip"),
    ({"cilium.lb_pool": {"start": "10.12.0.50", "stop": "10.12.0.99"}}, "addr.pool-outside-subnet", "cilium.lb_pool.start"),
    ({"cilium.lb_pool": {"start": "10.11.0.50", "stop": "10.11.0.99"}}, "addr.pool-in-storage-subnet", "cilium.lb_pool.start"),
    ({"cilium.lb_pool": {"start": "10.10.0.80", "stop": "10.10.0.80"}}, "addr.pool-too-small", "cilium.lb_pool.stop"),
    ({"networks.storage.mac_prefix": "52:54:00:10:10"}, "addr.mac-duplicate", "networks.storage.mac_prefix"),
    ({"services[0].new_ip": "10.10.0.40"}, "addr.service-ip-outside-pool", "services[0].new_ip"),
    ({"services[0].new_ip": "10.10.0.12", "cilium.lb_pool.start": "10.10.0.12"}, "addr.service-ip-host", "services[0].new_ip"),
    ({"mayastor.replicas": 4}, "mayastor.io-engine-nodes", "mayastor.replicas"),
    ({"mayastor.io_engine_cores": [5]}, "mayastor.io-engine-cores", "mayastor.io_engine_cores"),
    ({"truenas.enabled": True}, "budget.memory", "host.memory_gb"),
    ({"versions.talos": "1.9.0"}, "talos.version", "versions.talos"),
    ({"cluster.workers[2].cores": 32}, "budget.vcpu-vm", "cluster.workers[2].cores"),
    ({"talos.kernel_modules": ["iscsi_tcp"]}, "talos.nvme-tcp", "talos.kernel_modules"),
]


@pytest.mark.parametrize("patch, fid, field", FINDINGS, ids=[f[1] for f in FINDINGS])
def test_plan_findings_name_file_line_column_and_field(tmp_path, patch, fid, field):
    f = write_yaml(tmp_path, patched(patch))
    r = plan(f)
    assert r.returncode == 1, r.stderr
    block = r.stdout.split(f"ERROR    {fid}", 1)[1].split("\n\n", 1)[0]
    assert_points_at(f, block, field)
    data = json.loads(plan(f, "--json").stdout)
    hit = next(x for x in data["findings"] if x["id"] == fid)
    assert hit["at"] == field and hit["where"].startswith(f"{f}:")


def test_preflight_facade_findings_carry_the_place(state_env, tmp_path, monkeypatch):
    """00-preflight's call (`runbook.open(...).preflight()`): the findings table and result.json say where."""
    from falkit import runbook

    run_dir = tmp_path / "run"
    monkeypatch.setenv("FALKIT_RUN_DIR", str(run_dir))
    monkeypatch.chdir(tmp_path)
    f = write_yaml(tmp_path, patched({"mayastor.replicas": 4, "services[0].new_ip": "10.10.0.40"}))
    lab = runbook.open(f.name, target="twin", notebook="00-preflight")
    findings = lab.preflight()
    rows = {x.id: x.row() for x in findings if x.severity == "error"}
    assert_points_at(f, rows["mayastor.io-engine-nodes"]["where"], "mayastor.replicas")
    assert_points_at(f, rows["addr.service-ip-outside-pool"]["where"], "services[0].new_ip")
    result = json.loads((run_dir / "00-preflight.result.json").read_text())
    saved = next(x for x in result["findings"] if x["id"] == "mayastor.io-engine-nodes")
    assert saved["at"] == "mayastor.replicas" and saved["where"].startswith("lab.yaml:")


# -------------------------------------------------------------------------------------------------
# 5. secrets never echoed


TOKEN = "root@pam!falkit=7f3c9a1e-52b4-4c0e-9d61-aa0b5e2c8f14"
PASSWORD = "Tr0ub4dor&3-correct-horse"


@pytest.mark.parametrize("patch", [
    {"secrets.proxmox_token": TOKEN},
    {"secrets.proxmox_root_password": PASSWORD},
    {"secrets.proxmox_token": {"env": "FALKIT_PVE_TOKEN", "value": TOKEN}},
    {"truenas.api_key": TOKEN},
    {"gitops.credentials": TOKEN},
    {"secrets.proxmox_token_id": ["x", TOKEN]},
    {"lab": TOKEN},
    {"cluster.workers[0].ip": TOKEN},
    {"gitops.repo_url": [f"https://bob:{PASSWORD}@git.example.invalid/homelab.git"]},
], ids=["proxmox_token", "root_password", "extra-key", "truenas-api_key", "gitops-credentials", "list",
        "token-as-lab", "token-as-ip", "password-in-url"])
def test_an_inline_secret_is_never_echoed(tmp_path, patch):
    f = write_yaml(tmp_path, patched(patch))
    r = plan(f)
    assert r.returncode == 2, r.stdout[-500:]
    out = r.stdout + r.stderr
    for secret in (TOKEN, PASSWORD, TOKEN[16:40], PASSWORD[:12]):
        assert secret not in out, out
    top = next(iter(patch)).split(".")[0].split("[")[0]
    assert re.search(rf"{re.escape(str(f))}:\d+:\d+: {top}\b", r.stderr), r.stderr  # the place is still named
