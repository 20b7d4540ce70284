"""Where the charts the twin knows are published: its stand-in of the chart repositories' indexes.

Light on purpose (no twin imports): the ``helm`` stand-in loads it on every call, and the twin's
Argo CD (``falkit.twin.lab.argocd``) checks Application chart sources against the same table.
"""

from __future__ import annotations


def chart_key(chart: str) -> str:
    """``https://helm.cilium.io/cilium`` / ``oci://.../argo-cd`` / ``argocd`` -> the chart's name."""
    name = chart.rstrip("/").rsplit("/", 1)[-1].lower()
    return {"argocd": "argo-cd"}.get(name, name)


# Chart repositories the twin serves (URL without trailing slash -> chart names in its index), as
# each project documents its `helm repo add` line:
#   cilium      https://helm.cilium.io/                         docs.cilium.io, "Installation using Helm"
#   metallb     https://metallb.github.io/metallb               metallb.universe.tf/installation ("Installation with Helm")
#   mayastor    https://openebs.github.io/mayastor-extensions/  openebs/mayastor-extensions README
#   openebs     https://openebs.github.io/openebs               openebs/openebs README
#   longhorn    https://charts.longhorn.io                      longhorn.io docs, "Install with Helm"
#   argo-cd     https://argoproj.github.io/argo-helm            argoproj/argo-helm README
# A URL not in this table is a repository "that is not valid or cannot be reached" (the twin never
# leaves loopback); a chart not in its list is "not found in URL repository" (helm's words).
REPOSITORIES: dict[str, frozenset[str]] = {
    "https://helm.cilium.io": frozenset({"cilium"}),
    "https://metallb.github.io/metallb": frozenset({"metallb"}),
    "https://openebs.github.io/mayastor-extensions": frozenset({"mayastor"}),
    "https://openebs.github.io/openebs": frozenset({"openebs"}),
    "https://charts.longhorn.io": frozenset({"longhorn"}),
    "https://argoproj.github.io/argo-helm": frozenset({"argo-cd"}),
}
# OCI references the twin's registry serves (argo-helm publishes its charts to ghcr.io as well:
# argoproj/argo-helm README, "OCI").
OCI_CHARTS: dict[str, str] = {"oci://ghcr.io/argoproj/argo-helm/argo-cd": "argo-cd"}
# What `helm upgrade` without --version picks (the newest version the twin knows of each chart).
LATEST: dict[str, str] = {"cilium": "1.18.4", "metallb": "0.15.2", "mayastor": "2.8.0", "openebs": "4.2.0",
                          "longhorn": "1.8.1", "argo-cd": "9.1.0"}


def repository(url: str) -> frozenset[str] | None:
    """The charts of the repository at ``url`` (trailing slash ignored), or None when unknown."""
    return REPOSITORIES.get(url.strip().rstrip("/"))


def latest_version(ref: str) -> str:
    return LATEST.get(chart_key(ref), "0.0.0")
