"""``falkit doctor`` through the CLI (``falkit doctor --target twin|live --json``), on the twin.

Behaviours: on a healthy twin every row is ok or warn and the exit code is 0, and the command
changes nothing on the twin's Proxmox — the existing cluster's Talos secrets are the twin
operator's ``secrets.yaml`` (which connect() puts in the private dir, and 30-talos imports), the
tools are the twin's ``talosctl``/``helm`` stand-ins (first on PATH, as the run uses them), and
Plex's LXC template is not on the node but in Proxmox's appliance index (warn: 60-truenas-plex
downloads it; ok once it is there; block with the ``pveam`` command when it is in neither). Each
fault makes exactly its row block and the exit code 1: the existing cluster's secrets missing (no
file 30-talos would import), a token lacking a privilege of falkit's role (the twin's
``token_privilege_missing`` fault; the row names it and carries the filled-in ``pveum`` line), and —
on the live target, the operator's PATH, against the twin's Proxmox on its loopback address —
talosctl missing from PATH, a talosctl of another Talos minor, a helm too old for the spec's
Kubernetes. The GitOps row: the twin's local bare remote is reachable and writable; an unreachable
one blocks when ``gitops.push`` is on. A live target whose token secret is not set blocks on the
proxmox row without opening any connection.

The operator's tools on the live path are small loopback-free scripts printing the real tools'
version lines (``talosctl version --client --short``: ``Client:`` then ``Talos vX.Y.Z``,
siderolabs/talos pkg/version ``Short()``; ``helm version --short``: ``vX.Y.Z+g<sha>``, helm/helm
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
from falkit.clients.target import connect
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
    old_path = os.environ.get("PATH", "")
    os.environ["FALKIT_STATE_DIR"] = str(base / "state")
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "state" / "twin")
    good = base / "bin"
    good.mkdir()
    _tool(good, "talosctl", "Client:\n\tTalos v1.11.6")
    _tool(good, "helm", "v3.19.0+g3d8990f")
    t = connect(FAL, "twin", start_twin=False)  # the private dir of this twin instance
    try:
        yield {"conn": conn, "bin": good, "base": base, "private": t.private_dir}
    finally:
        supervisor.down(base / "state" / "twin")
        os.environ["PATH"] = old_path  # connect() put the twin's stand-ins first
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


@pytest.fixture
def healthy(lab, monkeypatch):
    """The operator's PATH (restored afterwards: a twin connect() puts its stand-ins first)."""
    monkeypatch.setenv("PATH", _path(lab["bin"]))
    return lab


def doctor(capsys, *extra: str, params: Path = FAL, target: str = "twin") -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--target", target, "--params", str(params), "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    return code, {r["check"]: r for r in out["rows"]}


def blocking(rows: dict[str, dict]) -> set[str]:
    return {name for name, r in rows.items() if r["status"] == "block"}


def test_doctor_passes_on_a_healthy_twin_and_changes_nothing(healthy, capsys):
    ctl = PveControl(healthy["conn"])
    before = ctl.state()
    assert not (healthy["private"] / "talos-secrets.yaml").exists()  # only the operator's secrets.yaml
    code, rows = doctor(capsys)
    assert code == 0 and blocking(rows) == set(), rows
    assert set(rows) == {"proxmox", "privileges", "storages", "talos-iso", "plex-image", "talos-secrets",
                         "addresses", "talosctl", "helm", "gitops-remote"}
    assert rows["proxmox"]["detail"].startswith("Proxmox VE 9.")
    assert rows["talos-secrets"]["detail"].endswith("secrets.yaml (30-talos imports it)")
    bindir = healthy["conn"]["bin_dir"]
    assert rows["talosctl"]["detail"].startswith(f"{bindir}/talosctl: v1.11.")  # the twin's stand-ins
    assert rows["helm"]["detail"].startswith(f"{bindir}/helm: v3.")
    assert rows["talos-iso"]["status"] == "warn"  # 20-vms downloads it
    assert rows["plex-image"] == {"check": "plex-image", "status": "warn", "fix": "", "detail":
                                  "local:vztmpl/pms-docker_latest.tar is not on the node; 60-truenas-plex pulls "
                                  "docker.io/plexinc/pms-docker:latest (oci-registry-pull; the node must reach "
                                  "the registry)"}
    code, rows = doctor(capsys, "--plex-image", "")  # Plex by hand in a Debian container: its template
    assert rows["lxc-template"] == {"check": "lxc-template", "status": "warn", "fix": "", "detail":
                                    "not on the node; 60-truenas-plex will download it: "
                                    "debian-12-standard_12.7-1_amd64.tar.zst is in the appliance index"}
    assert "52:54:00:10:10:11 -> 10.10.0.11" in rows["addresses"]["detail"]
    assert ctl.state() == before  # read-only


def test_the_existing_clusters_secrets_missing_blocks(healthy, capsys):
    from falkit.steps.talos import IMPORT_FILES, SECRETS_FILE

    kept = {}
    for name in (SECRETS_FILE, *IMPORT_FILES):
        f = healthy["private"] / name
        if f.exists():
            kept[f] = f.read_text()
            f.unlink()
    assert kept  # the twin's operator secrets.yaml was there
    try:
        code, rows = doctor(capsys)
        assert code == 1 and blocking(rows) == {"talos-secrets"}
        assert "exists (VMs 200, 201)" in rows["talos-secrets"]["detail"]
        assert "secrets.yaml" in rows["talos-secrets"]["fix"] and "controlplane.yaml" in rows["talos-secrets"]["fix"]
    finally:
        for f, text in kept.items():
            f.write_text(text)
            f.chmod(0o600)


def test_a_token_missing_a_privilege_blocks_the_privileges_row(healthy, capsys):
    ctl = PveControl(healthy["conn"])
    ctl.fault("token_privilege_missing", privilege="VM.PowerMgmt")
    try:
        code, rows = doctor(capsys)
    finally:
        ctl.clear()
    assert code == 1 and blocking(rows) == {"privileges"}, rows
    row = rows["privileges"]
    role = json.loads((Path(__file__).parents[1] / "falkit" / "data" / "pve-role.json").read_text())
    assert len(role["privileges"]) == 19  # Sys.AccessNetwork joined for Plex's oci-registry-pull
    assert row["detail"] == f"the token lacks 1 of the {len(role['privileges'])} privileges on /: VM.PowerMgmt"
    assert row["fix"].startswith("pveum role add FalkitMigration --privs \"Datastore.Allocate,")
    assert "VM.PowerMgmt" in row["fix"] and "{privs}" not in row["fix"] and "'root@pam!falkit'" in row["fix"]
    code, rows = doctor(capsys)  # the full role again
    assert rows["privileges"]["status"] == "ok"


def test_the_lxc_template_ok_on_the_node_warn_in_the_index_block_in_neither(healthy, capsys):
    import time

    from falkit.runbook.doctor import doctor as doctor_rows

    t = connect(FAL, "twin", start_twin=False, check_privileges=False)
    try:
        # what 60-truenas-plex (and `pveam download`) does: Proxmox downloads it from its index
        t.pve.nodes(t.node).aplinfo.post(storage="local", template=TEMPLATE.rsplit("/", 1)[1])
        deadline = time.monotonic() + 30
        while TEMPLATE not in [c["volid"] for c in t.pve.nodes(t.node).storage("local").content.get(content="vztmpl")]:
            assert time.monotonic() < deadline, "the download task did not finish"
            time.sleep(0.2)
        code, rows = doctor(capsys, "--plex-image", "")
        assert code == 0 and rows["lxc-template"]["status"] == "ok" and rows["lxc-template"]["detail"] == TEMPLATE
    finally:
        t.pve.nodes(t.node).storage("local").content(TEMPLATE).delete()  # as `pveam remove` would
        t.close()
    # a template Proxmox's appliance index does not have (the plex_template option): nothing fetches it
    other = "local:vztmpl/debian-11-standard_11.7-1_amd64.tar.zst"
    rows = {r.check: r for r in doctor_rows(FAL, "twin", plex_template=other, plex_image="")}
    assert rows["lxc-template"].status == "block"
    assert "not in Proxmox's appliance index" in rows["lxc-template"].detail
    assert rows["lxc-template"].fix == "pveam update && pveam download local debian-11-standard_11.7-1_amd64.tar.zst"
    code, rows = doctor(capsys, "--plex-image", "")
    assert rows["lxc-template"]["status"] == "warn"  # gone again: back in the index only


def test_plex_image_ok_once_pulled_warn_before(healthy, capsys):
    """Plex's OCI image (the default plex_image): warn until 60-truenas-plex's pull put the archive
    on ``local``, then ok naming it — the same oci-registry-pull call the step makes."""
    import time

    t = connect(FAL, "twin", start_twin=False, check_privileges=False)
    volid = "local:vztmpl/pms-docker_latest.tar"
    try:
        code, rows = doctor(capsys)
        assert rows["plex-image"]["status"] == "warn"
        pull = getattr(t.pve.nodes(t.node).storage("local"), "oci-registry-pull")
        pull.post(reference="docker.io/plexinc/pms-docker:latest", filename="pms-docker_latest")
        deadline = time.monotonic() + 30
        while volid not in [c["volid"] for c in t.pve.nodes(t.node).storage("local").content.get(content="vztmpl")]:
            assert time.monotonic() < deadline, "the pull task did not finish"
            time.sleep(0.2)
        code, rows = doctor(capsys)
        assert rows["plex-image"] == {"check": "plex-image", "status": "ok", "fix": "", "detail": volid}
    finally:
        try:
            t.pve.nodes(t.node).storage("local").content(volid).delete()
        finally:
            t.close()


@pytest.fixture
def live(healthy, monkeypatch, tmp_path):
    """The live path (token from the environment, the CA and the existing cluster's secrets in the
    live private dir, the operator's PATH) against the twin's Proxmox on its loopback address."""
    from falkit.clients.target import private_dir_for

    px = healthy["conn"]["proxmox"]
    assert ipaddress.ip_address(px["host"]).is_loopback  # never a real address
    monkeypatch.setenv("FALKIT_PVE_TOKEN", Path(px["token_file"]).read_text().strip())
    private = private_dir_for("the-fal", "live")
    shutil.copy(px["ca_file"], private / "pve-ca.pem")
    shutil.copy(healthy["private"] / "secrets.yaml", private / "secrets.yaml")
    (private / "secrets.yaml").chmod(0o600)
    params = _spec_with(tmp_path, secrets__proxmox_url=f"https://{px['host']}:{px['port']}",
                        gitops__checkout=healthy["conn"]["gitops"]["checkout"])
    yield params
    (private / "secrets.yaml").unlink()


def test_live_passes_with_the_operators_tools(live, capsys):
    code, rows = doctor(capsys, params=live, target="live")
    assert code == 0 and blocking(rows) == set(), rows
    assert rows["talosctl"]["detail"].endswith("v1.11.6") and "Kubernetes 1.31-1.34" in rows["helm"]["detail"]


def test_talosctl_missing_from_path_blocks_its_row(healthy, live, capsys, monkeypatch):
    nobin = healthy["base"] / "no-talosctl"
    nobin.mkdir(exist_ok=True)
    shutil.copy(healthy["bin"] / "helm", nobin / "helm")
    monkeypatch.setenv("PATH", _path(nobin))
    code, rows = doctor(capsys, params=live, target="live")
    assert code == 1 and blocking(rows) == {"talosctl"}
    assert rows["talosctl"]["detail"] == "talosctl is not on PATH" and "v1.11.6" in rows["talosctl"]["fix"]


@pytest.mark.parametrize(("tool", "line", "words"), [
    ("talosctl", "Client:\n\tTalos v1.10.5", "must share the minor"),
    ("helm", "v3.14.4+g81c902a", "supports Kubernetes 1.26-1.29"),
])
def test_a_tool_of_the_wrong_version_blocks_its_row(healthy, live, capsys, monkeypatch, tool, line, words):
    other = healthy["base"] / f"old-{tool}"
    other.mkdir(exist_ok=True)
    for name in ("talosctl", "helm"):
        shutil.copy(healthy["bin"] / name, other / name)
    _tool(other, tool, line)
    monkeypatch.setenv("PATH", _path(other))
    code, rows = doctor(capsys, params=live, target="live")
    assert code == 1 and blocking(rows) == {tool}
    assert words in rows[tool]["detail"]


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
    remote = Path(healthy["conn"]["gitops"]["remote"]).resolve()  # the twin's bare remote, its origin
    code, rows = doctor(capsys)
    assert code == 0 and rows["gitops-remote"]["status"] == "ok"
    assert rows["gitops-remote"]["detail"] == f"origin ({remote}) reachable and writable"
    # the remote goes away: with gitops.push the run would fail at the push, so doctor blocks
    subprocess.run(["git", "-C", str(checkout), "remote", "set-url", "origin", str(tmp_path / "gone.git")], check=True)
    try:
        code, rows = doctor(capsys, params=_spec_with(tmp_path, gitops__push=True))
        assert code == 1 and blocking(rows) == {"gitops-remote"}
        assert "is not reachable" in rows["gitops-remote"]["detail"]
    finally:
        subprocess.run(["git", "-C", str(checkout), "remote", "set-url", "origin", str(remote)], check=True)


def test_live_mode_against_a_loopback_proxmox(healthy, capsys, monkeypatch, tmp_path):
    """The live path (token from the environment, the CA in the live private dir) run against the
    twin's Proxmox on its loopback address: the same rows from the same calls."""
    from falkit.clients.target import private_dir_for

    px = healthy["conn"]["proxmox"]
    assert ipaddress.ip_address(px["host"]).is_loopback  # never a real address
    monkeypatch.setenv("FALKIT_PVE_TOKEN", Path(px["token_file"]).read_text().strip())
    shutil.copy(px["ca_file"], private_dir_for("the-fal", "live") / "pve-ca.pem")
    params = _spec_with(tmp_path, secrets__proxmox_url=f"https://{px['host']}:{px['port']}")
    code, rows = doctor(capsys, params=params, target="live")
    assert rows["proxmox"]["status"] == "ok", rows["proxmox"]
    assert rows["privileges"]["status"] == "ok"
    assert rows["storages"]["status"] == "ok" and rows["plex-image"]["status"] == "warn"
    assert "no remote 'origin'" not in rows["gitops-remote"]["detail"]  # live reads spec gitops.checkout
    assert rows["gitops-remote"]["status"] == "block"  # ~/src/homelab-gitops is not a checkout here
    assert code == 1


def test_live_without_a_token_secret_blocks_before_any_connection(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("FALKIT_PVE_TOKEN", raising=False)
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path))
    code = main(["doctor", "--target", "live", "--params", str(FAL), "--json"])
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert code == 1 and rows["proxmox"]["status"] == "block"
    assert "FALKIT_PVE_TOKEN" in rows["proxmox"]["detail"]
