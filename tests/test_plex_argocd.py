"""Plex's cutover when Argo CD manages the Kubernetes Plex, through ``falkit run`` (60-truenas-plex).

The twin's GitOps fixture leaves Plex out of Git (the seed's end state: "Media apps (minus Plex)"),
but an operator's lab before the migration may well have Plex in its media Application. Argo CD's
self-heal then scales the Plex that falkit scaled to 0 for the library copy back up within
seconds (self-heal after drift, ``SELF_HEAL_S`` in :mod:`falkit.twin.lab.argocd`): the copy would
wait for a Plex that never stops, or copy a library Plex is writing. The step pauses the
Application's automated sync (and the app-of-apps'), copies, starts the container, removes the
Kubernetes Plex from Git, and resumes the sync once that commit is delivered — Argo CD prunes Plex.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from test_rehearsal import falkit_run, lab  # noqa: F401 - the twin fixture

from falkit.clients.kube import kget

FAST = ("--set", "wait_timeout_s=60")
NS = "media"


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _plex_into_git(lab) -> None:  # noqa: F811
    """Plex's Deployment, as it runs, added to the media Application's manifest, committed and
    delivered to the branch Argo CD syncs (as falkit's own commits are: push, fast-forward)."""
    api = lab["target"].kube()
    live = kget(api, "apps/v1", "Deployment", "plex", NS)
    md = live["metadata"]
    doc = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "plex", "namespace": NS, **({"labels": md["labels"]} if md.get("labels") else {})},
           "spec": live["spec"]}
    manifest = lab["platform"] / NS / "deployments.yaml"
    manifest.write_text(manifest.read_text().rstrip("\n") + "\n---\n" + yaml.safe_dump(doc, sort_keys=False))
    repo = lab["platform"].parents[1]
    _git(repo, "commit", "-qam", "Plex in the media Application (a lab whose Plex Argo CD manages)")
    branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    _git(repo, "push", "-q", "origin", f"HEAD:{branch}", "HEAD:main")


def _tracked_by(api, name: str) -> str:
    ann = (kget(api, "apps/v1", "Deployment", name, NS) or {}).get("metadata", {}).get("annotations") or {}
    return ann.get("argocd.argoproj.io/tracking-id", "")


@pytest.mark.timeout(1800)
def test_an_argo_managed_plex_moves_with_its_sync_paused(lab):  # noqa: F811
    import time

    env, params = lab["env"], ("--params", str(lab["params"]))
    pre = falkit_run(env, *params, "--outputs", str(lab["out"] / "pre"), "--only", "00", "10", "20", "30", "40", "45",
                     "50", *FAST)
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]
    _plex_into_git(lab)
    target = lab["target"]
    target.reset_kube()
    api = target.kube()
    deadline = time.monotonic() + 60
    while not _tracked_by(api, "plex").startswith("media:") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _tracked_by(api, "plex").startswith("media:"), "Argo CD's media application did not adopt Plex"
    before = kget(api, "argoproj.io/v1alpha1", "Application", NS, "argocd")["spec"]["syncPolicy"]["automated"]
    assert before.get("selfHeal") is True, before

    run = falkit_run(env, *params, "--outputs", str(lab["out"] / "plex"), "--only", "60", *FAST)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "pause automated sync of Argo CD application media (until the Kubernetes Plex is removed)" in out, out[-4000:]
    assert "was scaled back up" not in out, out[-4000:]  # paused: nothing scaled Plex up during the copy
    target.reset_kube()
    api = target.kube()
    assert kget(api, "apps/v1", "Deployment", "plex", NS) is None  # pruned by Argo CD
    assert "name: plex" not in (lab["platform"] / NS / "deployments.yaml").read_text()
    app = kget(api, "argoproj.io/v1alpha1", "Application", NS, "argocd")
    assert app["spec"]["syncPolicy"]["automated"] == before  # resumed as it was
    assert "falkit.io/paused-automated-sync" not in (app["metadata"].get("annotations") or {})
    lib = kget(api, "v1", "PersistentVolumeClaim", "plex-config-lxc", NS)
    old = kget(api, "v1", "PersistentVolumeClaim", "plex-config", NS)
    assert lib["metadata"]["annotations"]["falkit.io/checksum"] == old["metadata"]["annotations"]["falkit.io/checksum"]
