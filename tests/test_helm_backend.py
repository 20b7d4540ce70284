"""The one Helm backend (falkit.clients.backends.helm.Helm) running `helm` on PATH, against the twin's helm
stand-in (falkit.twin.tools.helm) that the supervisor writes to $FALKIT_STATE_DIR/twin/bin and the
target puts first on PATH. Covers:

- there is one Helm class for both targets; on the twin `helm` resolves to the stand-in wrapper;
- install / re-run / get / list / uninstall through `helm`, asserted on the twin's lab state and
  Kubernetes objects (not on command lines);
- issue 13 fault 5, chart sources: falkit installs Mayastor and Argo CD from explicit repository
  URLs at pinned versions (the lab gets the release); the stand-in refuses what Helm refuses, in
  Helm's words — a bare chart name ("non-absolute URLs ..."), an alias never `helm repo add`ed
  ("repo argo not found"), a chart missing from a repository, an unknown repository, a missing
  release — and falkit refuses an unpinned version or a chart without an explicit source before
  anything runs;
- values reach helm through a 0600 file, never on the command line, and `helm` missing from PATH
  is a BackendError that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from test_runbook_support import FAL

from falkit.clients import backends
from falkit.clients.backends import BackendError
from falkit.clients.backends.helm import CHART_REPOSITORIES, Helm
from falkit.clients.target import connect
from falkit.model.spec import load_spec
from falkit.render import mayastorvalues as mv
from falkit.steps import argocd as argocd_step

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


def _lab_releases(t) -> dict:
    from falkit.twin.lab.client import LabClient

    return {(r["namespace"], r["name"]): r for r in LabClient(t.connection).call("GET", "/helm/releases")["releases"]}


def _helm(t, *args: str) -> subprocess.CompletedProcess:
    """Run `helm` as falkit does (the target's environment), with the target's kubeconfig."""
    return subprocess.run(["helm", "--kubeconfig", str(t.kubeconfig_path()), *args], capture_output=True, text=True,
                          env=t.tool_env(), timeout=120, check=False)


def test_one_helm_backend_runs_the_standin_on_path(state_env):
    base, conn = state_env
    t = connect(FAL, "twin")
    assert not hasattr(backends.helm, "TwinHelm") and not hasattr(backends.helm, "LiveHelm")
    assert isinstance(t.helm, Helm)
    assert shutil.which("helm", path=t.tool_env()["PATH"]) == str(base / "twin" / "bin" / "helm")
    listed = {(r["namespace"], r["name"]): r for r in t.helm.list()}
    assert listed[("kube-system", "cilium")]["chart"] == "cilium"  # parsed from "cilium-<version>"
    assert set(listed) == set(_lab_releases(t))


def test_install_rerun_get_uninstall_through_helm(state_env):
    t = connect(FAL, "twin")
    ns, name = "helm-test", "metallb-extra"
    assert t.helm.get(ns, name) is None
    rel = t.helm.upgrade_install(ns, name, "metallb", "0.15.2", {"speaker": {"enabled": False}})
    assert (rel["chart"], rel["version"], rel["revision"], rel["status"]) == ("metallb", "0.15.2", 1, "deployed")
    lab = _lab_releases(t)[(ns, name)]
    assert lab["chart"] == "https://metallb.github.io/metallb/metallb" and lab["values"] == {"speaker": {"enabled": False}}
    from kubernetes import client

    assert client.CoreV1Api(t.kube()).read_namespace(ns).metadata.name == ns  # --create-namespace
    again = t.helm.upgrade_install(ns, name, "metallb", "0.15.2", {"speaker": {"enabled": False}})
    assert again["revision"] == 1  # the same chart, version and values: nothing changes
    assert t.helm.get(ns, name)["values"] == {"speaker": {"enabled": False}}
    entries = [e for e in t.journal.since(0) if e["api"] == "helm"]
    assert [(e["method"], e["path"]) for e in entries] == [("PUT", f"/helm/releases/{ns}/{name}")] * 2
    t.helm.uninstall(ns, name)
    assert (ns, name) not in _lab_releases(t) and t.helm.get(ns, name) is None


def test_mayastor_and_argocd_come_from_explicit_repository_urls(state_env):
    """Fault 5: the charts the steps name install through real `helm` command lines."""
    t = connect(FAL, "twin")
    spec = load_spec(FAL)
    chart, version = mv.chart_ref(spec)
    rel = t.helm.upgrade_install("helm-t-mayastor", "mayastor", chart, version, mv.helm_values(spec))
    assert rel["status"] == "deployed"
    assert _lab_releases(t)[("helm-t-mayastor", "mayastor")]["chart"] == \
        "https://openebs.github.io/mayastor-extensions/mayastor"
    rel = t.helm.upgrade_install("helm-t-argocd", "argocd", argocd_step.CHART, argocd_step.CHART_VERSION, {})
    assert _lab_releases(t)[("helm-t-argocd", "argocd")]["chart"] == "https://argoproj.github.io/argo-helm/argo-cd"
    argv = t.helm.argv_upgrade_install("argocd", "argocd", argocd_step.CHART, "9.1.0", "/v.yaml")
    assert argv[argv.index("--repo") + 1] == CHART_REPOSITORIES["argo-cd"] and "argo/argo-cd" not in argv
    t.helm.uninstall("helm-t-mayastor", "mayastor")
    t.helm.uninstall("helm-t-argocd", "argocd")


@pytest.mark.parametrize("args, words", [
    (["mayastor", "--version", "2.8.0"],
     "Error: non-absolute URLs should be in form of repo_name/path_to_chart, got: mayastor"),
    (["argo/argo-cd", "--version", "9.1.0"], "Error: repo argo not found"),
    (["argo-cd", "--repo", "https://helm.cilium.io/", "--version", "9.1.0"],
     'Error: chart "argo-cd" version "9.1.0" not found in https://helm.cilium.io/ repository'),
    (["cilium", "--repo", "https://charts.example.org", "--version", "1.0.0"],
     'Error: looks like "https://charts.example.org" is not a valid chart repository or cannot be reached'),
])
def test_standin_refuses_what_helm_refuses(state_env, tmp_path, args, words, monkeypatch):
    monkeypatch.setenv("HELM_REPOSITORY_CONFIG", str(tmp_path / "repositories.yaml"))  # no `helm repo add`
    t = connect(FAL, "twin")
    before = _lab_releases(t)
    p = _helm(t, "upgrade", "--install", "x", *args, "--namespace", "helm-refused", "--create-namespace")
    assert p.returncode == 1 and p.stderr.startswith(words), p.stderr
    assert _lab_releases(t) == before  # nothing installed


def test_standin_alias_after_repo_add_and_missing_release(state_env, tmp_path, monkeypatch):
    repos = tmp_path / "repositories.yaml"
    repos.write_text("apiVersion: ''\nrepositories:\n- name: argo\n  url: https://argoproj.github.io/argo-helm\n")
    monkeypatch.setenv("HELM_REPOSITORY_CONFIG", str(repos))
    t = connect(FAL, "twin")
    p = _helm(t, "upgrade", "--install", "argo-alias", "argo/argo-cd", "--version", "9.1.0", "-n", "helm-alias",
              "--create-namespace")
    assert p.returncode == 0 and 'Release "argo-alias" does not exist. Installing it now.' in p.stdout, p.stderr
    assert ("helm-alias", "argo-alias") in _lab_releases(t)
    p = _helm(t, "uninstall", "argo-alias", "-n", "helm-alias")
    assert p.returncode == 0 and p.stdout == 'release "argo-alias" uninstalled\n'
    p = _helm(t, "uninstall", "argo-alias", "-n", "helm-alias")
    assert (p.returncode, p.stderr) == (1, "Error: uninstall: Release not loaded: argo-alias: release: not found\n")
    p = _helm(t, "status", "nope", "-n", "kube-system", "-o", "json")
    assert (p.returncode, p.stderr) == (1, "Error: release: not found\n")
    p = _helm(t, "list", "--bogus")
    assert (p.returncode, p.stderr) == (1, "Error: unknown flag: --bogus\n")
    p = _helm(t, "upgrade", "--install", "x", "cilium", "--repo", "https://helm.cilium.io/", "--version", "1.18.4",
              "-n", "no-such-ns")
    assert p.returncode == 1 and 'namespaces "no-such-ns" not found' in p.stderr


def test_standin_status_json_is_helms_record(state_env):
    t = connect(FAL, "twin")
    p = _helm(t, "status", "cilium", "-n", "kube-system", "-o", "json")
    assert p.returncode == 0 and p.stdout.endswith("}\n") and "\n" not in p.stdout[:-1]  # json.Encoder
    rec = json.loads(p.stdout)
    assert rec["name"] == "cilium" and rec["version"] == 1 and rec["info"]["status"] == "deployed"
    assert rec["chart"]["metadata"]["name"] == "cilium" and rec["config"]
    assert rec["info"]["deleted"] == "0001-01-01T00:00:00Z"


def test_falkit_refuses_unpinned_or_sourceless_charts_before_running_helm(state_env):
    t = connect(FAL, "twin")
    before = _lab_releases(t)
    with pytest.raises(BackendError, match="pinned versions only"):
        t.helm.upgrade_install("x", "x", "metallb", "", {})
    with pytest.raises(BackendError, match="explicit repository URL or an oci:// reference"):
        t.helm.upgrade_install("x", "x", "argo/argo-cd", "9.1.0", {})
    assert _lab_releases(t) == before


def test_values_go_by_0600_file_and_missing_helm(tmp_path):
    log = tmp_path / "seen"
    tool = tmp_path / "helm"
    tool.write_text("#!/bin/sh\n"
                    f'for a; do echo "$a" >> {log}; done\n'
                    f'f=""; prev=""; for a; do [ "$prev" = "-f" ] && f="$a"; prev="$a"; done\n'
                    f'stat -c %a "$f" >> {log}; cat "$f" >> {log}\n'
                    'echo "Error: UPGRADE FAILED: boom" >&2; exit 1\n')
    tool.chmod(0o755)
    h = Helm("/p/kc", helm=str(tool))
    with pytest.raises(BackendError, match="UPGRADE FAILED: boom"):
        h.upgrade_install("ns", "r", "cilium", "1.18.4", {"secret": "s3cr3t-value"})
    seen = log.read_text()
    assert "600\n" in seen and "s3cr3t-value" in seen.split("600\n", 1)[1]
    assert "s3cr3t-value" not in seen.split("600\n", 1)[0]  # never on the command line
    env = dict(os.environ, PATH=str(tmp_path / "empty"))
    with pytest.raises(BackendError, match="not found on PATH"):
        Helm("/p/kc", env=env).list()
