"""``falkit doctor`` on the twin, through the CLI (``falkit doctor --target twin --json``).

Behaviours: on a healthy twin (the operator's Talos secrets in place, talosctl and helm of fitting
versions on PATH) every row is ok or warn and the exit code is 0, and the command changes nothing
on the twin's Proxmox; each fault makes exactly its row block and the exit code 1: talosctl missing
from PATH, a talosctl of another Talos minor, a helm too old for the spec's Kubernetes, the existing
cluster's Talos secrets missing, and Plex's LXC template deleted from the node. The GitOps row: a
local bare remote is reachable and writable; an unreachable one blocks when ``gitops.push`` is on.
The live path runs against the twin's Proxmox on its loopback address (token from the environment,
CA in the live private dir); a live target whose token secret is not set blocks on the proxmox row
without opening any connection.

talosctl/helm are small loopback-free stand-in scripts printing the real tools' version lines
(``talosctl version --client --short``: ``Client:`` then ``Talos vX.Y.Z``, siderolabs/talos
pkg/version ``Short()``; ``helm version --short``: ``vX.Y.Z+g<sha>``, helm/helm
internal/version ``GetVersion``/``formatVersion``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from falkit.cli import main
from falkit.target import connect
from falkit.twin import supervisor
from falkit.twin.pvecontrol import PveControl

ROOT = Path(__file__).resolve().parents[1]
FAL = ROOT / "parameters" / "fal.yaml"
TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


def _tool(bindir: Path, name: str, text: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + "".join(f"printf '%s\\n' '{line}'\n" for line in text.splitlines()))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _path(bindir: Path) -> str:
    """PATH with the stand-ins and git only (no real talosctl/helm from the machine)."""
    gitdir = Path(shutil.which("git")).parent
    return os.pathsep.join([str(bindir), str(gitdir), "/usr/bin", "/bin"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("doctor")
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(base / "state")
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "state" / "twin")
    good = base / "bin"
    good.mkdir()
    _tool(good, "talosctl", "Client:\n\tTalos v1.11.6")
    _tool(good, "helm", "v3.19.0+g3d8990f")
    t = connect(FAL, "twin", start_twin=False)  # the private dir of this twin instance
    secrets = t.private_dir / "talos-secrets.yaml"
    try:
        yield {"conn": conn, "bin": good, "base": base, "secrets": secrets}
    finally:
        supervisor.down(base / "state" / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


@pytest.fixture
def healthy(lab, monkeypatch):
    """The operator's preconditions: secrets imported (0600), tools on PATH."""
    lab["secrets"].write_text("cluster:\n  id: imported-from-the-operator\n")
    lab["secrets"].chmod(0o600)
    monkeypatch.setenv("PATH", _path(lab["bin"]))
    return lab


def doctor(capsys, *extra: str, params: Path = FAL, target: str = "twin") -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--target", target, "--params", str(params), "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    return code, {r["check"]: r for r in out["rows"]}


def blocking(rows: dict[str, dict]) -> set[str]:
    return {name for name, r in rows.items() if r["status"] == "block"}


def test_doctor_passes_on_a_healthy_twin_and_changes_nothing(healthy, capsys):
    ctl = PveControl(healthy["conn"]["pve_control"])
    before = ctl.state()
    code, rows = doctor(capsys)
    assert code == 0 and blocking(rows) == set()
    assert set(rows) == {"proxmox", "privileges", "storages", "talos-iso", "lxc-template", "talos-secrets",
                         "addresses", "talosctl", "helm", "gitops-remote"}
    assert rows["proxmox"]["detail"].startswith("Proxmox VE 9.")
    assert rows["talosctl"]["detail"].endswith("v1.11.6") and "Kubernetes 1.31-1.34" in rows["helm"]["detail"]
    assert rows["talos-iso"]["status"] == "warn"  # 20-vms downloads it
    assert "52:54:00:10:10:11 -> 10.10.0.11" in rows["addresses"]["detail"]
    assert ctl.state() == before  # read-only


def test_talosctl_missing_from_path_blocks_its_row(healthy, capsys, monkeypatch):
    nobin = healthy["base"] / "no-talosctl"
    nobin.mkdir(exist_ok=True)
    shutil.copy(healthy["bin"] / "helm", nobin / "helm")
    monkeypatch.setenv("PATH", _path(nobin))
    code, rows = doctor(capsys)
    assert code == 1 and blocking(rows) == {"talosctl"}
    assert rows["talosctl"]["detail"] == "talosctl is not on PATH" and "v1.11.6" in rows["talosctl"]["fix"]


@pytest.mark.parametrize(("tool", "line", "words"), [
    ("talosctl", "Client:\n\tTalos v1.10.5", "must share the minor"),
    ("helm", "v3.14.4+g81c902a", "supports Kubernetes 1.26-1.29"),
])
def test_a_tool_of_the_wrong_version_blocks_its_row(healthy, capsys, monkeypatch, tool, line, words):
    other = healthy["base"] / f"old-{tool}"
    other.mkdir(exist_ok=True)
    for name in ("talosctl", "helm"):
        shutil.copy(healthy["bin"] / name, other / name)
    _tool(other, tool, line)
    monkeypatch.setenv("PATH", _path(other))
    code, rows = doctor(capsys)
    assert code == 1 and blocking(rows) == {tool}
    assert words in rows[tool]["detail"]


def test_the_existing_clusters_secrets_missing_blocks(healthy, capsys):
    healthy["secrets"].unlink()
    code, rows = doctor(capsys)
    assert code == 1 and blocking(rows) == {"talos-secrets"}
    assert "exists (VMs 200, 201)" in rows["talos-secrets"]["detail"]
    assert "--from-controlplane-config" in rows["talos-secrets"]["fix"]


def _spec_with(tmp_path: Path, **changes) -> Path:
    """parameters/fal.yaml with dotted-path ``changes`` (e.g. ``gitops__push=True``)."""
    import yaml

    data = yaml.safe_load(FAL.read_text())
    for dotted, value in changes.items():
        *head, last = dotted.split("__")
        node = data
        for k in head:
            node = node[k]
        node[last] = value
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_gitops_remote_reachable_and_writable_or_blocking_when_pushing(healthy, capsys, tmp_path):
    import subprocess

    checkout = Path(healthy["conn"]["gitops"]["checkout"])
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "-C", str(checkout), "remote", "add", "origin", str(bare)], check=True)
    try:
        code, rows = doctor(capsys)
        assert code == 0 and rows["gitops-remote"]["status"] == "ok"
        assert rows["gitops-remote"]["detail"] == f"origin ({bare}) reachable and writable"
        # the remote goes away: with gitops.push the run would fail at the push, so doctor blocks
        subprocess.run(["git", "-C", str(checkout), "remote", "set-url", "origin", str(tmp_path / "gone.git")], check=True)
        code, rows = doctor(capsys, params=_spec_with(tmp_path, gitops__push=True))
        assert code == 1 and blocking(rows) == {"gitops-remote"}
        assert "is not reachable" in rows["gitops-remote"]["detail"]
    finally:
        subprocess.run(["git", "-C", str(checkout), "remote", "remove", "origin"], check=True)


def test_live_mode_against_a_loopback_proxmox(healthy, capsys, monkeypatch, tmp_path):
    """The live path (token from the environment, the CA in the live private dir) run against the
    twin's Proxmox on its loopback address: the same rows from the same calls."""
    from falkit.target import private_dir_for

    px = healthy["conn"]["proxmox"]
    assert ipaddress.ip_address(px["host"]).is_loopback  # never a real address
    monkeypatch.setenv("FALKIT_PVE_TOKEN", Path(px["token_file"]).read_text().strip())
    shutil.copy(px["ca_file"], private_dir_for("the-fal", "live") / "pve-ca.pem")
    params = _spec_with(tmp_path, secrets__proxmox_url=f"https://{px['host']}:{px['port']}")
    code, rows = doctor(capsys, params=params, target="live")
    assert rows["proxmox"]["status"] == "ok", rows["proxmox"]
    assert rows["privileges"]["status"] == "ok"
    assert rows["storages"]["status"] == "ok" and rows["lxc-template"]["status"] == "ok"
    assert "no remote 'origin'" not in rows["gitops-remote"]["detail"]  # live reads spec gitops.checkout
    assert rows["gitops-remote"]["status"] == "block"  # ~/src/homelab-gitops is not a checkout here
    assert code == 1


def test_a_missing_lxc_template_blocks_its_row(healthy, capsys):
    # the fault: the template is not on the node (deleted through the API, as `pveam remove` would)
    t = connect(FAL, "twin", start_twin=False)
    t.pve.nodes(t.node).storage("local").content(TEMPLATE).delete()
    code, rows = doctor(capsys)
    assert code == 1 and blocking(rows) == {"lxc-template"}
    assert rows["lxc-template"]["fix"].startswith("pveam update && pveam download local debian-12-standard")


def test_live_without_a_token_secret_blocks_before_any_connection(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("FALKIT_PVE_TOKEN", raising=False)
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path))
    code = main(["doctor", "--target", "live", "--params", str(FAL), "--json"])
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert code == 1 and rows["proxmox"]["status"] == "block"
    assert "FALKIT_PVE_TOKEN" in rows["proxmox"]["detail"]
