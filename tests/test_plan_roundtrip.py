"""A plan saved to JSON, loaded and applied to the twin does what the in-memory plan does (issue 18,
"the plan is apply's only input").

Covers, through ``falkit run`` (00..30 on a twin in its "before" state) and the runbook facade as
40-cilium's notebook drives it:

- 40-cilium's plan carries several typed payload types (a Helm release, Kubernetes applies and
  deletes, Git edits of Argo CD-managed Services, a wait) and survives ``to_json`` -> JSON file ->
  ``from_json`` equal to itself;
- applying the in-memory plan (``lab.step("cilium").apply()``) on the twin, and applying the
  *loaded* plan (``lab.apply_plan(loaded)``, no observe before it) on an identical fresh twin
  (``twin snapshot`` before the step, ``up --restore``, the GitOps repository copied back) give the
  same lab: Cilium's and MetalLB's releases, the pools and policy, each Service's annotations and
  address, the tree Argo CD reads from Git; both re-observe converged (an empty plan); and both
  made the same mutating calls (falkit's journal: API, method, path, status), in the same order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import patched, write_yaml

from falkit import runbook
from falkit.clients.kube import kget, klist
from falkit.plan.diff import Plan
from falkit.render import ciliumvalues as cv

ROOT = Path(__file__).resolve().parents[1]
STEP = "cilium"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FALKIT_RUN_DIR", None)
    return subprocess.run([sys.executable, "-m", "falkit.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=900)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """A twin migrated by ``falkit run`` up to 30-talos, snapshotted (with a copy of its GitOps
    repository, which the snapshot does not hold) just before 40-cilium."""
    from falkit.twin import supervisor

    tmp = tmp_path_factory.mktemp("roundtrip")
    params = write_yaml(tmp, patched({}))
    state = tmp / "state"
    keys = ("FALKIT_STATE_DIR", "FALKIT_HEADLESS", "FALKIT_RUN_DIR", "FALKIT_INTERACTIVE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(FALKIT_STATE_DIR=str(state), FALKIT_HEADLESS="1")
    os.environ.pop("FALKIT_INTERACTIVE", None)
    os.environ.pop("FALKIT_RUN_DIR", None)
    root = state / "twin"
    supervisor.up(params, state="before", state_dir=root, time_factor=0.0)
    try:
        run = _cli("run", "--params", str(params), "--outputs", str(tmp / "outputs"), "--only", "00", "10", "20", "30")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        snap = supervisor.snapshot("pre-cilium", root)
        repos = tmp / "repos"
        for repo in root.glob("gitops*"):
            shutil.copytree(repo, repos / repo.name, symlinks=True)
        yield {"params": params, "tmp": tmp, "root": root, "snapshot": snap, "repos": repos}
    finally:
        supervisor.down(root)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _open(t: dict, run_dir: Path) -> runbook.Lab:
    os.environ["FALKIT_RUN_DIR"] = str(run_dir)
    return runbook.open(t["params"], "twin", apply=True, notebook="40-cilium", allow_disruptive=True,
                        time_factor=0.0, wait_timeout_s=120)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def lab_state(lab: runbook.Lab, root: Path) -> dict:
    """What 40-cilium changes, read from the twin's servers and the GitOps remote Argo CD reads."""
    api, helm = lab.target.kube(), lab.target.helm
    cilium = helm.get("kube-system", "cilium")
    pool_api, policy = cv.cilium_api(lab.spec.versions.cilium)["pool"], cv.l2_policy(lab.spec)
    out = {
        "cilium": cilium and (cilium.get("version"), cilium.get("status"), cilium.get("values")),
        "metallb": helm.get("metallb-system", "metallb"),
        "pools": sorted((p["metadata"]["name"], json.dumps(p["spec"], sort_keys=True))
                        for p in klist(api, pool_api, "CiliumLoadBalancerIPPool")),
        "policy": (kget(api, policy["apiVersion"], policy["kind"], policy["metadata"]["name"]) or {}).get("spec"),
        "metallb_objects": sorted(o["metadata"]["name"] for kind in ("L2Advertisement", "IPAddressPool")
                                  for o in klist(api, "metallb.io/v1beta1", kind, "metallb-system")),
        "services": {},
    }
    for s in lab.spec.services:
        svc = kget(api, "v1", "Service", s.name, s.namespace)
        if svc is not None:
            ann = {k: v for k, v in ((svc["metadata"].get("annotations") or {}).items()) if "last-applied" not in k}
            ips = [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
            out["services"][f"{s.namespace}/{s.name}"] = (ann, ips)
    remote = root / "gitops-remote.git"
    out["git"] = {ref: _git(remote, "rev-parse", f"{ref}^{{tree}}")
                  for ref in _git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()}
    return out


def _calls(lab: runbook.Lab, mark: int) -> list[tuple]:
    return [(e["api"], e["method"], e["path"], e["status"]) for e in lab.target.journal.since(mark)]


def test_a_loaded_plan_applies_as_the_in_memory_plan(twin):
    from falkit.twin import supervisor

    tmp = twin["tmp"]
    # 1. the in-memory plan, as the notebook runs it
    lab = _open(twin, tmp / "run-memory")
    run = lab.step(STEP)
    plan = run.plan
    kinds = {type(c.data).__name__ for c in plan.changes}
    assert {"HelmRelease", "KubeApply", "GitChange", "WaitServiceIPs"} <= kinds, (kinds, str(plan))
    saved = tmp / "cilium.plan.json"
    saved.write_text(json.dumps(plan.to_json(), indent=2))
    mark = lab.target.journal.mark()
    run.apply()
    assert run.converged and lab.plan_step(STEP).empty
    memory_calls = _calls(lab, mark)
    memory_state = lab_state(lab, twin["root"])
    lab.close()
    assert memory_calls and memory_state["metallb"] is None

    # 2. an identical fresh twin: the snapshot taken before 40-cilium, the GitOps repository as it was
    supervisor.down(twin["root"])
    for repo in twin["repos"].iterdir():
        shutil.rmtree(twin["root"] / repo.name)
        shutil.copytree(repo, twin["root"] / repo.name, symlinks=True)
    supervisor.up(twin["params"], state_dir=twin["root"], restore=twin["snapshot"], time_factor=0.0)

    loaded = Plan.from_json(json.loads(saved.read_text()))
    assert loaded == plan  # payloads included: the Git edits, the Helm values, the objects
    lab = _open(twin, tmp / "run-loaded")
    mark = lab.target.journal.mark()
    again = lab.apply_plan(loaded)  # nothing observed before: apply reads the loaded plan only
    assert again.converged and lab.plan_step(STEP).empty
    assert _calls(lab, mark) == memory_calls
    assert lab_state(lab, twin["root"]) == memory_state
    result = json.loads((tmp / "run-loaded" / "40-cilium.result.json").read_text())
    assert Plan.from_json(result["steps"][STEP]["plan"]).changes[0].data.chart == plan.changes[0].data.chart
    lab.close()
