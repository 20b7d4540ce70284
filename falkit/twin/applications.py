"""Argo CD Applications and GitOps-repository conventions as the twin's fixtures write them.

Written from Argo CD's own manifest shape, not from falkit's builders (the twin must not agree with
falkit by construction; see .importlinter and docs/UPSTREAM.md):

* the shape: ``docs/operator-manual/application.yaml`` of argoproj/argo-cd
  (commit 0327d2f95be2ae7e0e7ed091fe8195fe922ac51b): ``metadata.namespace: argocd``,
  ``spec.project``, ``spec.source.{repoURL,targetRevision,path|chart}`` ("For Helm, this refers to
  the chart version"; ``chart`` "when pulling directly from a Helm repo"), ``spec.destination.
  {server,namespace}`` with the in-cluster server ``https://kubernetes.default.svc``,
  ``spec.syncPolicy.automated.{prune,selfHeal}`` and ``syncOptions: [CreateNamespace=true]``;
* ``spec.source.helm.valuesObject`` (values as an object) from the Application CRD of Argo CD
  v3.5.1 (falkit/data/upstream/argocd/application-crd.yaml, commit
  109ca7ca71139e514114499d294a492e7910a965);
* the app-of-apps pattern ("cluster bootstrapping", Argo CD docs operator-manual/cluster-bootstrapping.md):
  a parent Application whose directory source holds the children's Application manifests, applied
  into ``argocd``;
* ``.disabled``: the seed's convention (homelab-migration.md, "Disabled": Longhorn's files "renamed
  to ``.disabled``"); Argo CD's directory source reads only ``.yaml``, ``.yml``, ``.json`` (and
  ``.jsonnet``) files (docs user-guide/directory.md), so a renamed file leaves the app.
"""

from __future__ import annotations

from typing import Any

ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
DISABLED_SUFFIX = ".disabled"


def application(name: str, repo_url: str, *, namespace: str, path: str | None = None, chart: str | None = None,
                revision: str = "HEAD", values: dict | None = None, prune: bool = True,
                self_heal: bool = True) -> dict[str, Any]:
    """An ``argoproj.io/v1alpha1`` Application: a Git directory (``path``) or a Helm chart
    (``chart`` from the Helm repository ``repo_url``, ``revision`` = its version)."""
    if (path is None) == (chart is None):
        raise ValueError("an Application source has either a path (Git) or a chart (Helm repository)")
    source: dict[str, Any] = {"repoURL": repo_url, "targetRevision": revision}
    if chart is not None:
        source["chart"] = chart
        if values:
            source["helm"] = {"valuesObject": values}
    else:
        source["path"] = path
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE},
            "spec": {"project": "default", "source": source,
                     "destination": {"server": IN_CLUSTER, "namespace": namespace},
                     "syncPolicy": {"automated": {"prune": prune, "selfHeal": self_heal},
                                    "syncOptions": ["CreateNamespace=true"]}}}


def app_of_apps(repo_url: str, platform_path: str, name: str = "platform") -> dict[str, Any]:
    """The seed's parent Application over ``platform_path`` (its ``*-app.yaml`` children)."""
    return application(name, repo_url, path=platform_path, namespace=ARGOCD_NAMESPACE)
