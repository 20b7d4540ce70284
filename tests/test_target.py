"""falkit.clients.target and falkit.clients.journal against the real twin (started through the supervisor).

Covers: connecting to the twin (proxmoxer over verified TLS, the kube client from the twin's
kubeconfig); the journal records mutating calls made through proxmoxer (response hook) and through
the kubernetes client (ApiClient subclass) — and not reads — in memory and in
$FALKIT_RUN_DIR/journal.jsonl, with secret-named body fields redacted; the live target built from
spec.secrets (pointed at the twin's Proxmox, token from an env var, CA from the private dir) and its
errors (missing token names the variable, no kubeconfig before bootstrap); private files are 0600;
the twin's private dir is reset for a new twin instance; start_twin=False without a twin fails.
"""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from helpers import patched, write_yaml
from kubernetes import client
from test_runbook_support import FAL

from falkit.clients.journal import Journal, read_journal, summarize
from falkit.clients.target import connect, private_dir_for
from falkit.model.errors import TargetError

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


def test_connect_twin_reads_connection_and_lists_vms(state_env):
    base, conn = state_env
    t = connect(FAL, "twin")
    assert t.kind == "twin" and t.node == conn["proxmox"]["node"] == "fal"
    assert t.spec_path == FAL.resolve()
    vms = {v["vmid"]: v["name"] for v in t.pve.nodes(t.node).qemu.get()}
    assert vms.get(200) == "talos-cp-01"
    assert t.private_dir == base / "twin" / "private" / "the-fal"
    assert stat.S_IMODE(t.private_dir.stat().st_mode) == 0o700
    assert t.journal.count() == 0  # reads are not journaled
    # issue 18: apply gets the target and the plan only, so the spec is not reachable from the
    # target — it keeps what connecting needs (lab name, secrets references, GitOps checkout)
    assert not hasattr(t, "spec")
    assert t.lab == "the-fal" and t.secrets.proxmox_url.startswith("https://")


def test_journal_records_pve_post_and_file(state_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_RUN_DIR", str(tmp_path))
    t = connect(FAL, "twin")
    t.pve.nodes(t.node).qemu(200).config.get()
    t.pve.nodes(t.node).qemu(200).config.post(description="journal test", cipassword="hunter2-secret-value")
    entries = t.journal.since(0)
    assert len(entries) == 1
    e = entries[0]
    assert (e["api"], e["method"], e["path"], e["status"]) == ("pve", "POST", "/nodes/fal/qemu/200/config", 200)
    assert "description=journal test" in e["summary"]
    on_disk = read_journal(tmp_path / "journal.jsonl")
    assert on_disk == entries
    assert "hunter2-secret-value" not in (tmp_path / "journal.jsonl").read_text()
    assert "cipassword=<redacted>" in e["summary"]


def test_journal_records_kube_post_not_get(state_env):
    t = connect(FAL, "twin")
    core = client.CoreV1Api(t.kube())
    core.list_namespace()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="journal-test")))
    assert core.read_namespace("journal-test").metadata.name == "journal-test"  # server state
    entries = t.journal.since(0)
    assert [(e["api"], e["method"], e["path"], e["status"]) for e in entries] == [
        ("kube", "POST", "/api/v1/namespaces", 201)]
    assert entries[0]["summary"] == "namespaces journal-test"
    mark = t.journal.mark()
    core.delete_namespace("journal-test")
    assert [e["method"] for e in t.journal.since(mark)] == ["DELETE"]
    assert t.journal.count() == 2 and t.journal.by_api() == {"kube": 2}


def test_dynamic_client_is_journaled(state_env):
    t = connect(FAL, "twin")
    cms = t.dynamic().resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"},
                     "data": {"token": "abc-not-to-be-journaled"}}, namespace="default")
    e = t.journal.since(0)[-1]
    assert (e["api"], e["method"], e["path"]) == ("kube", "POST", "/api/v1/namespaces/default/configmaps")
    assert "abc-not-to-be-journaled" not in json.dumps(e)


def test_summarize_redacts_secret_keys():
    s = summarize({"name": "vm", "password": "p4ss", "api_key": "k", "sshkeys": "ssh-rsa AAA", "nested": {"token": "t"}})
    assert "p4ss" not in s and "ssh-rsa" not in s and '"t"' not in s
    assert "name=vm" in s
    assert Journal(use_env=False).record("pve", "GET", "/x", 200) is None


def test_write_private_is_0600_and_resets_kube(state_env):
    t = connect(FAL, "twin")
    t.kube()
    path = t.write_private("talosconfig", "context: x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert t.read_private("talosconfig") == "context: x\n"
    with pytest.raises(ValueError):
        t.write_private("../escape", "x")


def test_twin_private_dir_reset_for_new_twin(state_env):
    base, conn = state_env
    t = connect(FAL, "twin")
    t.write_private("kubeconfig-old", "stale")
    (t.private_dir / "run.lock").write_text("{}")
    (t.private_dir / "twin-started").write_text("an earlier twin")
    t2 = connect(FAL, "twin")
    assert not (t2.private_dir / "kubeconfig-old").exists()
    assert (t2.private_dir / "run.lock").exists()  # the run lock survives
    (t2.private_dir / "run.lock").unlink()


def test_no_twin_and_no_start_is_an_error(tmp_path):
    with pytest.raises(TargetError, match="no twin is up"):
        connect(FAL, "twin", state_dir=tmp_path, start_twin=False)


def _live_spec(tmp_path, conn, env="FALKIT_TEST_PVE_TOKEN"):
    px = conn["proxmox"]
    data = patched({"secrets.proxmox_url": f"https://{px['host']}:{px['port']}",
                    "secrets.proxmox_token": {"env": env}})
    return write_yaml(tmp_path, data)


def test_live_target_over_verified_tls(state_env, tmp_path, monkeypatch):
    base, conn = state_env
    spec_path = _live_spec(tmp_path, conn)
    px = conn["proxmox"]
    monkeypatch.setenv("FALKIT_TEST_PVE_TOKEN", open(px["token_file"]).read().strip())
    private = private_dir_for("the-fal", "live", base)
    shutil.copy(px["ca_file"], private / "pve-ca.pem")
    try:
        t = connect(spec_path, "live")
        assert t.kind == "live" and t.private_dir == base / "live" / "the-fal"
        assert t.pve.version.get()["version"]
        with pytest.raises(TargetError, match="no kubeconfig"):
            t.kube()
    finally:
        (private / "pve-ca.pem").unlink()


def test_live_without_ca_fails_tls(state_env, tmp_path, monkeypatch):
    import requests

    base, conn = state_env
    spec_path = _live_spec(tmp_path, conn)
    monkeypatch.setenv("FALKIT_TEST_PVE_TOKEN", open(conn["proxmox"]["token_file"]).read().strip())
    with pytest.raises(TargetError, match="TLS certificate is not trusted") as exc:
        connect(spec_path, "live")  # connect's read-only privilege check is its first call
    assert isinstance(exc.value.__cause__, requests.exceptions.SSLError)


def test_live_missing_token_names_the_variable(state_env, tmp_path, monkeypatch):
    base, conn = state_env
    spec_path = _live_spec(tmp_path, conn, env="FALKIT_TEST_UNSET_TOKEN")
    monkeypatch.delenv("FALKIT_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(TargetError, match=r"\$FALKIT_TEST_UNSET_TOKEN"):
        connect(spec_path, "live")
