"""Backends: the talosctl and helm command lines LiveTalos/Helm build (without running the
tools; secrets go in 0600 files, never in argv), LiveTalos/Helm turning a failing tool into
BackendError with its words (a stand-in executable script prints like the tool), and the lab API
URL rules of the twin backends."""

from __future__ import annotations

import os
import stat

import pytest

from falkit.backends import BackendError, UnreachableError, lab_base
from falkit.backends.helm import Helm
from falkit.backends.talos import LiveTalos


def test_talosctl_argv():
    t = LiveTalos("/p/talosconfig")
    assert t.argv_apply("10.10.0.11", "/tmp/c.yaml", insecure=True) == [
        "talosctl", "-n", "10.10.0.11", "-e", "10.10.0.11", "apply-config", "--file", "/tmp/c.yaml", "--insecure"]
    assert t.argv_apply("10.10.0.11", "/tmp/c.yaml", insecure=False) == [
        "talosctl", "--talosconfig", "/p/talosconfig", "-n", "10.10.0.11", "-e", "10.10.0.11", "apply-config", "--file", "/tmp/c.yaml"]
    assert t.argv_bootstrap("10.10.0.10")[-1] == "bootstrap"
    assert t.argv_kubeconfig("10.10.0.10", "/o/kc")[-3:] == ["kubeconfig", "/o/kc", "--force"]
    assert t.argv_get_config("10.10.0.10")[-4:] == ["get", "machineconfig", "-o", "yaml"]
    assert t.argv_read("10.10.0.11", "/proc/modules")[-2:] == ["read", "/proc/modules"]
    assert t.argv_version("10.10.0.12", insecure=True)[-2:] == ["version", "--insecure"]
    assert "health" in t.argv_health(None)


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
    t = LiveTalos("/p/talosconfig", talosctl=tool)
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
