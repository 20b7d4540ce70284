"""The argocd step's pure plan (falkit.steps.argocd.plan_argocd): the Helm release with the spec's
Argo CD image and a pool address, the repository Secret whose plan names the credential reference
but never its value, the app-of-apps, and an empty plan when everything is in place."""

from __future__ import annotations

from pathlib import Path

from falkit.model.spec import SecretRef, load_spec
from falkit.render.gitops import platform_application
from falkit.steps.argocd import CHART_VERSION, ArgoFacts, helm_values, plan_argocd, repo_secret
from falkit.steps.base import StepOptions

ROOT = Path(__file__).resolve().parents[1]


def spec_with_credentials():
    spec = load_spec(ROOT / "parameters" / "fal.yaml")
    g = spec.gitops.model_copy(update={"credentials": SecretRef(env="FALKIT_TEST_GIT_TOKEN")})
    return spec.model_copy(update={"gitops": g})


def test_fresh_cluster_plan(monkeypatch):
    monkeypatch.setenv("FALKIT_TEST_GIT_TOKEN", "s3cr3t-token-value")
    spec = spec_with_credentials()
    plan = plan_argocd(spec, ArgoFacts(None, None, None), StepOptions())
    kinds = [(c.op, c.kind) for c in plan.changes]
    assert kinds == [("create", "helm-release"), ("create", "k8s-object"), ("create", "argocd-application"),
                     ("action", "argocd")]  # then wait: the server's IP, the Applications Synced/Healthy
    rel = plan.changes[0].data
    assert rel.values["global"]["image"]["tag"] == "v3.5.1" and rel.version == CHART_VERSION
    assert rel.values["server"]["service"] == {"type": "LoadBalancer"}  # "Auto": no IP annotation
    assert "$FALKIT_TEST_GIT_TOKEN" in plan.changes[1].reason
    assert plan.changes[1].data.credentials.env == "FALKIT_TEST_GIT_TOKEN"  # the reference; apply reads the value
    assert "s3cr3t-token-value" not in str(plan) + repr(plan.to_json()) + plan._repr_html_()


def test_converged_plan_is_empty():
    spec = load_spec(ROOT / "parameters" / "fal.yaml")
    facts = ArgoFacts(release={"version": CHART_VERSION, "values": helm_values(spec), "status": "deployed"},
                      server=None, repo_secret=repo_secret(spec),
                      applications={"platform": platform_application(spec.gitops)})
    plan = plan_argocd(spec, facts, StepOptions())
    assert plan.empty and len(plan.noops) == 3


def test_pinned_ip_gets_the_cilium_annotation():
    spec = load_spec(ROOT / "parameters" / "fal.yaml")
    services = [s.model_copy(update={"new_ip": "10.10.0.81"}) if s.name == "argocd-server" else s for s in spec.services]
    spec = spec.model_copy(update={"services": services})
    assert helm_values(spec)["server"]["service"]["annotations"] == {"lbipam.cilium.io/ips": "10.10.0.81"}
