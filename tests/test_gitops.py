"""The GitOps checkout (falkit.render.gitops) on a real git repository built by make_fixture_repo:
finding the document that defines an object, editing one field while every comment, other document
and other field stays byte-for-byte, *.disabled renames and their reversal, commits on the branch,
refusal of stale plans, and pushing only when spec.gitops.push is true."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from falkit.model.spec import load_spec
from falkit.render.gitops import (
    Checkout,
    CheckoutConflictError,
    ObjectRef,
    edit_document,
    git,
    load_documents,
    split_documents,
)
from falkit.twin.gitops_fixture import make_fixture_repo

ROOT = Path(__file__).resolve().parents[1]
TRAEFIK_SVC = ObjectRef("v1", "Service", "traefik", "traefik")
CILIUM_PATCH = {"metadata": {"annotations": {"metallb.universe.tf/loadBalancerIPs": None,
                                             "lbipam.cilium.io/ips": "10.10.0.80"}}}


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "parameters" / "fal.yaml")


@pytest.fixture
def repo(tmp_path, spec):
    """The fixture repository plus a bare 'origin' it was cloned to (to prove nothing is pushed)."""
    root = make_fixture_repo(tmp_path / "gitops", spec)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(root), str(remote)], check=True)
    git(root, "remote", "add", "origin", str(remote))
    return root, remote


def remote_branches(remote: Path) -> list[str]:
    return git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()


def test_split_documents_round_trips():
    text = "# head\na: 1\n---\nb: 2\n---\n# only a comment\n---\nc: 3\n"
    assert "".join(split_documents(text)) == text
    assert load_documents(text) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_find_uses_the_application_destination_namespace(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    doc = co.find(ObjectRef("apps/v1", "Deployment", "traefik", "traefik"))
    assert doc.path == "kubernetes/platform/traefik/deployment.yaml" and doc.index == 1
    assert co.find(ObjectRef("apps/v1", "Deployment", "media", "sonarr")).path.endswith("media/deployments.yaml")
    assert co.find(ObjectRef("v1", "Service", "other", "traefik")) is None  # explicit namespace differs
    assert co.find(ObjectRef("v1", "Service", "traefik", "nope")) is None


def test_edit_changes_only_the_field(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    before = co.read("kubernetes/platform/traefik/service.yaml")
    edit = co.plan_edit(TRAEFIK_SVC, CILIUM_PATCH)
    after_lines, before_lines = edit.after.splitlines(), before.splitlines()
    changed = [(a, b) for a, b in zip(before_lines, after_lines, strict=True) if a != b]
    assert changed == [('    metallb.universe.tf/loadBalancerIPs: "10.30.0.100"', "    lbipam.cilium.io/ips: 10.10.0.80")]
    assert "# Traefik's LoadBalancer Service" in edit.after and "# MetalLB pool" in edit.after
    assert "-    metallb.universe.tf/loadBalancerIPs" in edit.diff and "+    lbipam.cilium.io/ips: 10.10.0.80" in edit.diff
    # the plan touched nothing on disk
    assert co.read("kubernetes/platform/traefik/service.yaml") == before


def test_edit_of_one_document_keeps_the_others(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    text = co.read("kubernetes/platform/traefik/deployment.yaml")
    new = edit_document(text, 1, {"spec": {"replicas": 2}})
    old_docs, new_docs = split_documents(text), split_documents(new)
    assert old_docs[0] == new_docs[0]  # the ServiceAccount document, byte for byte
    assert load_documents(new)[1]["spec"]["replicas"] == 2
    assert load_documents(new)[1]["spec"]["template"] == load_documents(text)[1]["spec"]["template"]
    assert sum(a != b for a, b in zip(text.splitlines(), new.splitlines(), strict=True)) == 1


def test_edit_that_changes_nothing_is_no_edit(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    assert co.plan_edit(ObjectRef("apps/v1", "Deployment", "traefik", "traefik"), {"spec": {"replicas": 1}}) is None


def test_commit_on_branch_and_never_push(repo, spec):
    root, remote = repo
    co = Checkout.from_spec(spec.gitops.model_copy(update={"push": False}), root)
    assert co.push is False
    main = co.head("main")
    commit = co.commit([co.plan_edit(TRAEFIK_SVC, CILIUM_PATCH)])
    assert commit.branch == "falkit/migration" and commit.pushed is False
    assert co.current_branch() == "falkit/migration" and co.head() == commit.sha
    assert co.head("main") == main  # main untouched
    shown = git(root, "show", f"{commit.sha}:kubernetes/platform/traefik/service.yaml")
    assert "lbipam.cilium.io/ips: 10.10.0.80" in shown
    assert git(root, "status", "--porcelain").strip() == ""
    assert remote_branches(remote) == ["main"]  # nothing pushed


def test_push_only_when_asked(repo, spec):
    root, remote = repo
    co = Checkout.from_spec(spec.gitops.model_copy(update={"push": True}), root)
    commit = co.commit([co.plan_edit(TRAEFIK_SVC, CILIUM_PATCH)])
    assert commit.pushed and "falkit/migration" in remote_branches(remote)


def test_stale_plan_is_refused(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    edit = co.plan_edit(TRAEFIK_SVC, CILIUM_PATCH)
    p = co.path(edit.path)
    p.write_text(p.read_text() + "# operator edit\n")
    with pytest.raises(CheckoutConflictError):
        co.commit([edit])


def test_dirty_tree_blocks_branch_switch(repo, spec):
    co = Checkout.from_spec(spec.gitops, repo[0])
    edit = co.plan_edit(TRAEFIK_SVC, CILIUM_PATCH)
    readme = co.path("README.md")
    readme.write_text("changed\n")
    with pytest.raises(CheckoutConflictError, match="uncommitted"):
        co.commit([edit])
    assert co.current_branch() == "main"


def test_longhorn_renames_and_reversal(repo, spec):
    root, _ = repo
    co = Checkout.from_spec(spec.gitops, root)
    edits = co.longhorn_renames(disable=True)
    assert [e.rename_to.rsplit("/", 1)[1] for e in edits] == [f + ".disabled" for f in spec.gitops.longhorn_files]
    co.commit(edits)
    plat = root / spec.gitops.platform_path
    assert all((plat / (f + ".disabled")).is_file() and not (plat / f).exists() for f in spec.gitops.longhorn_files)
    assert all(not p.endswith("longhorn-app.yaml") for p in co.manifest_files())
    assert co.longhorn_renames(disable=True) == []  # already disabled
    back = co.longhorn_renames(disable=False)
    assert len(back) == 3
    co.commit(back)
    assert all((plat / f).is_file() for f in spec.gitops.longhorn_files)
    log = git(root, "log", "--format=%s", "-2").splitlines()
    assert log[0].startswith("falkit: 3 GitOps changes") and log[1].startswith("falkit: 3 GitOps changes")


def test_after_state_fixture_has_the_seed_end_state(tmp_path, spec):
    root = make_fixture_repo(tmp_path / "after", spec, state="after")
    co = Checkout.from_spec(spec.gitops, root)
    names = {d.obj["metadata"]["name"] for d in co.applications()}
    assert "mayastor" in names and not names & {"longhorn", "longhorn-ingress", "longhorn-rbac"}
    svc = co.find(TRAEFIK_SVC).obj
    assert svc["metadata"]["annotations"] == {"lbipam.cilium.io/ips": "10.10.0.80"}
