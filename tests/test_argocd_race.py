"""A sync Argo CD decided before falkit's pause lands after it (the CI hang of session 8: rollback-volumes
waited 600 s for "Deployment media/radarr scaled down").

Argo CD's application controller decides auto-sync on its cached copy of the Application and
``SetAppOperation`` re-checks only ``operation`` (argo-cd controller/appcontroller.go ``autoSync``,
util/argo/argo.go, docs/FACTS.md "Argo CD"), so one self-heal can still scale a workload back up
after falkit paused the automated sync and scaled it to 0. The twin's lab fault ``argocd_sync_race``
makes that late sync happen deterministically (the twin's controller otherwise does it only when a
pass that began before the pause is still running). Through ``falkit run``, as an operator runs it:
the volume move of 50-mayastor and the move back of 80-rollback each see the workload scaled back
up — while they wait for its pods to go, or while its claim is copied — say so, scale it down
again (and copy again), and finish; the fault is consumed (the race did happen).
"""

from __future__ import annotations

import re

import pytest
from test_rehearsal import falkit_run, lab  # noqa: F401 - the twin fixture

from falkit.clients.kube import kget
from falkit.twin.lab.client import LabClient

FAST = ("--set", "wait_timeout_s=30")
# the late sync lands during the wait for the pods to go, or after it, while the claim is copied
RACE = re.compile(r"Deployment media/radarr (was scaled back up to 1 after falkit scaled it to 0|was scaled up to 1 "
                  r"while media/radarr-config(-mayastor)? was copied) \(Argo CD application 'media' synced it: a sync "
                  r"that started before the pause\): scaling it down (again|and copying again)")


def _race(lab) -> LabClient:  # noqa: F811
    client = LabClient(lab["target"].connection)
    rec = client.fault("argocd_sync_race", app="media")
    assert rec["app"] == "media" and rec["automated"].get("selfHeal") is True, rec
    return client


def _claim(lab, name: str) -> str:  # noqa: F811
    lab["target"].reset_kube()
    d = kget(lab["target"].kube(), "apps/v1", "Deployment", name, "media")
    return next(v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]
                if "persistentVolumeClaim" in v)


@pytest.mark.timeout(1800)
def test_a_sync_that_raced_the_pause_is_scaled_down_again_both_ways(lab):  # noqa: F811
    env, params = lab["env"], ("--params", str(lab["params"]))
    pre = falkit_run(env, *params, "--outputs", str(lab["out"] / "pre"), "--only", "00", "10", "20", "30", "40", "45",
                     *FAST)
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]

    client = _race(lab)
    moved = falkit_run(env, *params, "--outputs", str(lab["out"] / "move"), "--only", "50", *FAST)
    out = moved.stdout + moved.stderr
    assert moved.returncode == 0, out[-4000:]
    assert RACE.search(out), out[-4000:]
    assert client.faults()["argocd_sync_race"] == {}  # the late sync did run
    assert _claim(lab, "radarr").endswith("-mayastor")

    client = _race(lab)
    options = ("--set", "rollback=true", "--set", "destroy_extra_workers=true", "--set", "allow_destructive=true")
    rolled = falkit_run(env, *params, "--outputs", str(lab["out"] / "rollback"), "--only", "80", *options, *FAST)
    out = rolled.stdout + rolled.stderr
    assert rolled.returncode == 0, out[-4000:]
    assert RACE.search(out), out[-4000:]
    assert client.faults()["argocd_sync_race"] == {}
    assert not _claim(lab, "radarr").endswith("-mayastor")


@pytest.mark.timeout(1800)
def test_a_parent_sync_that_raced_its_pause_is_paused_again(lab):  # noqa: F811
    """The app-of-apps' late sync (fault on ``platform``) re-applies the media Application from Git,
    automated policy included, after falkit paused it: without a second pause media's self-heal
    scales radarr back up every time (CI: "is scaled back up to 1 each time falkit scales it to 0
    (4 times; Argo CD application 'media' synced it)"). falkit sees the policy back, says so, pauses
    media again, and the move finishes; both policies are resumed as they were."""
    env, params = lab["env"], ("--params", str(lab["params"]))
    pre = falkit_run(env, *params, "--outputs", str(lab["out"] / "pre"), "--only", "00", "10", "20", "30", "40", "45",
                     *FAST)
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]
    client = LabClient(lab["target"].connection)
    assert client.fault("argocd_sync_race", app="platform")["app"] == "platform"
    moved = falkit_run(env, *params, "--outputs", str(lab["out"] / "move"), "--only", "50", *FAST)
    out = moved.stdout + moved.stderr
    assert moved.returncode == 0, out[-4000:]
    assert "Argo CD application media has its automated sync back (a sync of the application above it, decided " \
           "before its pause, re-applied it from Git): pausing it again" in out, out[-4000:]
    assert client.faults()["argocd_sync_race"] == {}
    assert _claim(lab, "radarr").endswith("-mayastor")
    api = lab["target"].kube()
    for app in ("platform", "media"):
        a = kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd")
        assert (a["spec"]["syncPolicy"]["automated"] or {}).get("selfHeal") is True, (app, a["spec"]["syncPolicy"])
        assert "falkit.io/paused-automated-sync" not in (a["metadata"].get("annotations") or {})
