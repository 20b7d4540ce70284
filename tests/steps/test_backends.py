"""Backends: the talosctl and helm command lines Talos/Helm build (secrets go in 0600 files,
never in argv), Talos/Helm turning a failing tool into BackendError with its words (a script
prints like the tool), and the lab API URL rules.

Talos' live-path readings (issue 13), with scripts that answer as talosctl v1.11 does:
- maintenance mode: a node answering a talosconfig with "x509: certificate signed by unknown
  authority" and ``--insecure`` with "API is not implemented in maintenance mode" is in maintenance
  (fault 2); one answering ``--insecure`` with "certificate required" is a configured node of
  another CA (ForeignCAError, fault 4);
- health: the subprocess limit never undercuts ``--wait-timeout`` (fault 3); the checks talosctl
  reported are returned one by one;
- bootstrap's AlreadyExists is "bootstrapped already", and ``service etcd`` STATE Running is
  "bootstrapped" (fault 3)."""

from __future__ import annotations

import os
import stat

import pytest

from falkit.clients.backends import BackendError, UnreachableError, lab_base
from falkit.clients.backends.helm import Helm
from falkit.clients.backends.talos import ForeignCAError, Talos


def test_talosctl_argv():
    t = Talos("/p/talosconfig")
    assert t.argv_apply("10.10.0.11", "/tmp/c.yaml", insecure=True) == [
        "talosctl", "-n", "10.10.0.11", "-e", "10.10.0.11", "apply-config", "--file", "/tmp/c.yaml", "--insecure"]
    assert t.argv_apply("10.10.0.11", "/tmp/c.yaml", insecure=False) == [
        "talosctl", "--talosconfig", "/p/talosconfig", "-n", "10.10.0.11", "-e", "10.10.0.11", "apply-config", "--file", "/tmp/c.yaml"]
    assert t.argv_bootstrap("10.10.0.10")[-1] == "bootstrap"
    assert t.argv_kubeconfig("10.10.0.10", "/o/kc")[-3:] == ["kubeconfig", "/o/kc", "--force"]
    assert t.argv_get_config("10.10.0.10")[-4:] == ["get", "machineconfig", "-o", "yaml"]
    assert t.argv_read("10.10.0.11", "/proc/modules")[-2:] == ["read", "/proc/modules"]
    assert t.argv_version("10.10.0.12", insecure=True)[-2:] == ["version", "--insecure"]
    assert t.argv_health("10.10.0.10", 600)[-3:] == ["health", "--wait-timeout", "600s"]
    assert t.argv_service("10.10.0.10", "etcd")[-2:] == ["service", "etcd"]


def test_helm_argv():
    h = Helm("/p/kubeconfig")
    assert h.argv_upgrade_install("kube-system", "cilium", "cilium", "1.18.10", "/tmp/v.yaml") == [
        "helm", "--kubeconfig", "/p/kubeconfig", "upgrade", "--install", "cilium", "cilium", "--repo", "https://helm.cilium.io/",
        "--version", "1.18.10", "--namespace", "kube-system", "--create-namespace", "-f", "/tmp/v.yaml", "--wait", "--timeout", "10m"]
    assert h.argv_uninstall("metallb-system", "metallb")[-4:] == ["metallb", "--namespace", "metallb-system", "--wait"]
    assert h.argv_list()[-3:] == ["--all-namespaces", "-o", "json"]


def _tool(tmp_path, name, script):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_live_talos_apply_passes_config_by_0600_file_and_reports_errors(tmp_path):
    log = tmp_path / "seen"
    tool = _tool(tmp_path, "talosctl", f'for a; do echo "$a" >> {log}; done\n'
                 f'f=""; prev=""; for a; do [ "$prev" = "--file" ] && f="$a"; prev="$a"; done\n'
                 f'stat -c %a "$f" >> {log}; cat "$f" >> {log}\n'
                 'echo "rpc error: code = Unavailable desc = connection refused" >&2; exit 1\n')
    t = Talos("/p/talosconfig", talosctl=tool)
    with pytest.raises(UnreachableError, match="connection refused"):
        t.apply_config("10.10.0.11", "secret-token-xyz\n", insecure=False)
    seen = log.read_text()
    assert "600" in seen and "secret-token-xyz" in seen  # the config reached the tool through the file
    argv_part = seen.split("600")[0]
    assert "secret-token-xyz" not in argv_part
    assert not any(n.startswith("falkit-talos-") for n in os.listdir(os.path.dirname(seen.split("--file\n")[1].split("\n")[0])))


def test_live_helm_missing_tool(tmp_path):
    h = Helm("/p/kc", helm=str(tmp_path / "nope"))
    with pytest.raises(BackendError, match="not found"):
        h.list()


def test_lab_base():
    assert lab_base("http://127.0.0.1:9/lab") == "http://127.0.0.1:9/lab"
    assert lab_base("http://127.0.0.1:9") == "http://127.0.0.1:9/lab"
    with pytest.raises(BackendError):
        lab_base("http://10.10.0.10:9/lab")


X509 = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: '
        'tls: failed to verify certificate: x509: certificate signed by unknown authority"')
CERT_REQUIRED = ('rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: '
                 'remote error: tls: certificate required"')


def _talosctl(tmp_path, secure_err: str, insecure_err: str):
    """A talosctl that fails a talosconfig call with ``secure_err`` and an --insecure one with ``insecure_err``."""
    return _tool(tmp_path, "talosctl",
                 'for a; do [ "$a" = "--insecure" ] && { echo "error getting version from node 10.10.0.12: '
                 f"{insecure_err}\" >&2; exit 1; }}; done\n"
                 f"echo 'error getting version from node 10.10.0.12: {secure_err}' >&2; exit 1\n")


def test_maintenance_node_is_recognised_by_its_x509_answer(tmp_path):
    tool = _talosctl(tmp_path, X509, "rpc error: code = Unimplemented desc = API is not implemented in maintenance mode")
    got = Talos("/p/talosconfig", talosctl=tool).version("10.10.0.12")
    assert got["maintenance"] is True


def test_configured_node_of_another_ca_is_foreign(tmp_path):
    tool = _talosctl(tmp_path, X509, CERT_REQUIRED)
    with pytest.raises(ForeignCAError, match="CA is not the talosconfig's"):
        Talos("/p/talosconfig", talosctl=tool).version("10.10.0.12")


def test_health_subprocess_outlives_its_wait_timeout(tmp_path):
    tool = _tool(tmp_path, "talosctl", 'sleep 1.5\n'
                 'echo "discovered nodes: [\\"10.10.0.10\\"]" >&2\n'
                 'echo "waiting for etcd to be healthy: OK" >&2\n'
                 'echo "waiting for all k8s nodes to report ready: some nodes are not ready: [talos-cp-01]" >&2\n'
                 'echo "rpc error: code = DeadlineExceeded desc = context deadline exceeded" >&2; exit 1\n')
    h = Talos("/p/talosconfig", talosctl=tool, timeout=1.0).health("10.10.0.10", wait_timeout_s=2)
    assert h["ok"] is False
    assert h["checks"] == [{"name": "etcd to be healthy", "ok": True, "message": "OK"},
                           {"name": "all k8s nodes to report ready", "ok": False,
                            "message": "some nodes are not ready: [talos-cp-01]"}]


def test_bootstrapped_is_etcd_running_and_already_exists_is_fine(tmp_path):
    tool = _tool(tmp_path, "talosctl",
                 'for a; do [ "$a" = "bootstrap" ] && { echo "error executing bootstrap: rpc error: code = AlreadyExists '
                 'desc = etcd data directory is not empty" >&2; exit 1; }; done\n'
                 'printf "NODE      talos-cp-01\\nID        etcd\\nSTATE     Running\\nHEALTH    OK\\n"\n')
    t = Talos("/p/talosconfig", talosctl=tool)
    assert t.etcd_running("10.10.0.10") is True
    assert t.bootstrap("10.10.0.10") == {"node": "10.10.0.10", "bootstrapped": True, "already": True}
