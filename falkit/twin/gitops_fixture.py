"""The twin's GitOps repository: a git repository with the seed's layout under
``spec.gitops.platform_path`` (the platform app-of-apps' children, Traefik, cert-manager, External
Secrets, the media apps, Longhorn's three Applications, Mayastor's StorageClass), in the state
before or after the migration. The twin's supervisor creates it under its state dir and its Argo
CD syncs from it; tests build their own. falkit's runbook never creates it for a live lab: there
it works on the operator's checkout (:mod:`falkit.gitops`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .applications import DISABLED_SUFFIX as DISABLED
from .applications import application

# The Mayastor chart as the operator's repository names it: the ``mayastor`` chart of the Helm
# repository published from openebs/mayastor-extensions (its README: ``helm repo add mayastor
# https://openebs.github.io/mayastor-extensions/``), version = Mayastor's.
MAYASTOR_CHART_REPO = "https://openebs.github.io/mayastor-extensions/"
# Values an operator sets for Talos, keys of the chart's chart/values.yaml: ``io_engine.cpuCount``
# (default "2"; the stored early-2.x chart, openebs/mayastor-extensions@01e89b40c97ef256683f826990dc246fe3ac19f3,
# has the same default under ``mayastor.cpuCount``; "1" leaves a 2-vCPU worker one core),
# ``csi.node.kubeletDir`` (/var/lib/kubelet, the chart default and Talos' kubelet root),
# ``storageClass.enabled`` (the seed applies its own StorageClass). Not verified against v2.8's values.
MAYASTOR_VALUES = {"io_engine": {"cpuCount": "1"}, "csi": {"node": {"kubeletDir": "/var/lib/kubelet"}},
                   "storageClass": {"enabled": False}}
MAYASTOR_PROVISIONER = "io.openebs.csi-mayastor"  # storageclass-parameters.md (falkit/data/upstream/mayastor)


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _identity(root: Path) -> list[str]:
    """A committer identity when the machine has none (a fresh CI machine)."""
    proc = subprocess.run(["git", "-C", str(root), "config", "user.email"], capture_output=True, text=True, check=False)
    return [] if proc.stdout.strip() else ["-c", "user.name=falkit-twin", "-c", "user.email=falkit-twin@localhost"]


def _storage_class(spec: Any) -> dict:
    """The seed's ``mayastor/storageclass.yaml`` (applied by hand): OpenEBS' StorageClass shape,
    every parameter a string (falkit/data/upstream/mayastor/storageclass-parameters.md)."""
    m = spec.mayastor
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": m.storage_class},
            "provisioner": MAYASTOR_PROVISIONER, "allowVolumeExpansion": True,
            "parameters": {"repl": str(m.replicas), "protocol": m.protocol,
                           "thin": "true" if m.thin else "false", "fsType": m.fs_type}}

# The Longhorn UI was a LoadBalancer on 10.30.0.70 (MetalLB) before the migration.
_LONGHORN_VALUES = {"service": {"ui": {"type": "LoadBalancer"}},
                    "persistence": {"defaultClass": True, "defaultClassReplicaCount": 1}}

_TRAEFIK_SERVICE = """\
# Traefik's LoadBalancer Service. The address is requested from the load balancer by annotation.
apiVersion: v1
kind: Service
metadata:
  name: traefik
  namespace: traefik
  annotations:
    # MetalLB pool 10.30.0.65-10.30.0.100 (see infrastructure/terraform/main.tf)
    metallb.universe.tf/loadBalancerIPs: "{ip}"
  labels:
    app.kubernetes.io/name: traefik
spec:
  type: LoadBalancer
  selector:
    app.kubernetes.io/name: traefik
  ports:
    - name: web
      port: 80
      targetPort: 8000
    - name: websecure
      port: 443
      targetPort: 8443
"""

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels:
    app.kubernetes.io/name: {name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
    spec:
      containers:
        - name: {name}
          image: {image}
"""

# The media apps keep their configuration on a Longhorn volume (the claims 50-mayastor migrates).
_CONFIG_VOLUME = """\
          volumeMounts:
            - name: config
              mountPath: /config
      volumes:
        - name: config
          persistentVolumeClaim:
            claimName: {name}-config
"""

_SERVICE_ACCOUNT = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
  namespace: {ns}
"""

_LONGHORN_INGRESS = """\
# Longhorn UI behind Traefik
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: longhorn-frontend
  namespace: longhorn-system
spec:
  ingressClassName: traefik
  rules:
    - host: longhorn.fal.home.arpa
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: longhorn-frontend
                port:
                  number: 80
"""

_LONGHORN_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: longhorn-ui-viewer
rules:
  - apiGroups: ["longhorn.io"]
    resources: ["volumes", "nodes"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: longhorn-ui-viewer
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: longhorn-ui-viewer
subjects:
  - kind: Group
    name: homelab-admins
    apiGroup: rbac.authorization.k8s.io
"""

#: The media apps of the fixture (DEFAULT: the seed names none; Plex left for an LXC container).
MEDIA_APPS = (("sonarr", "lscr.io/linuxserver/sonarr:4.0.15"), ("radarr", "lscr.io/linuxserver/radarr:5.27.5"))


def make_fixture_repo(path: str | os.PathLike, spec: Any, *, state: str = "before") -> Path:
    """A git repository at ``path`` with the seed's layout under ``spec.gitops.platform_path``,
    committed on ``main``:

    - ``traefik-app.yaml`` + ``traefik/{deployment,service}.yaml`` (the Service's load-balancer
      annotation: MetalLB's ``metallb.universe.tf/loadBalancerIPs`` with the old IP in ``before``,
      Cilium's ``lbipam.cilium.io/ips`` with the new one in ``after``), ``cert-manager-app.yaml``,
      ``external-secrets-app.yaml``, ``media-app.yaml`` (media apps minus Plex), each a directory
      source of this repository (``spec.gitops.repo_url``);
    - ``longhorn-app.yaml`` (the ``longhorn`` Helm chart), ``longhorn-ingress-app.yaml``,
      ``longhorn-rbac-app.yaml`` — renamed ``*.disabled`` in ``after``;
    - ``mayastor/storageclass.yaml`` (the seed ``kubectl apply``s it) and, in ``after``,
      ``mayastor-app.yaml`` (the ``mayastor`` chart).

    The Applications are the children of :func:`falkit.twin.applications.app_of_apps`. ``state``: ``before`` (the
    stack before the migration) or ``after`` (the seed's end state).
    """
    if state not in ("before", "after"):
        raise ValueError(f"state must be 'before' or 'after', not {state!r}")
    g = spec.gitops
    root = Path(path)
    plat = root / g.platform_path
    url = g.repo_url
    traefik = next((s for s in spec.services if s.name == "traefik"), None)
    files: dict[str, str] = {}

    def app_file(name: str, obj: dict, comment: str = "") -> None:
        files[f"{name}"] = (f"# {comment}\n" if comment else "") + yaml.safe_dump(obj, sort_keys=False)

    def path_app(name: str, ns: str, comment: str = "") -> None:
        app_file(f"{name}-app.yaml", application(name, url, path=f"{g.platform_path}/{name}", namespace=ns), comment)

    path_app("traefik", "traefik", "Traefik ingress controller")
    service = _TRAEFIK_SERVICE.format(ip=traefik.old_ip if traefik else "10.30.0.100")
    if state == "after" and traefik:
        service = service.replace("    # MetalLB pool 10.30.0.65-10.30.0.100 (see infrastructure/terraform/main.tf)\n"
                                  "    metallb.universe.tf/loadBalancerIPs", "    lbipam.cilium.io/ips")
        service = service.replace(f'"{traefik.old_ip}"', f'"{traefik.new_ip}"')
    files["traefik/service.yaml"] = service
    files["traefik/deployment.yaml"] = (_SERVICE_ACCOUNT.format(name="traefik", ns="traefik") + "---\n"
                                        + _DEPLOYMENT.format(name="traefik", ns="traefik", image="traefik:v3.5.3"))
    path_app("cert-manager", "cert-manager", "cert-manager")
    files["cert-manager/deployment.yaml"] = _DEPLOYMENT.format(name="cert-manager", ns="cert-manager",
                                                               image="quay.io/jetstack/cert-manager-controller:v1.19.1")
    path_app("external-secrets", "external-secrets", "External Secrets Operator")
    files["external-secrets/deployment.yaml"] = _DEPLOYMENT.format(name="external-secrets", ns="external-secrets",
                                                                   image="ghcr.io/external-secrets/external-secrets:v0.20.4")
    path_app("media", "media", "Media apps (Plex moved to an LXC container with GPU passthrough)")
    files["media/deployments.yaml"] = "---\n".join(_DEPLOYMENT.format(name=n, ns="media", image=i) + _CONFIG_VOLUME.format(name=n)
                                                   for n, i in MEDIA_APPS)
    longhorn = {
        "longhorn-app.yaml": yaml.safe_dump(application("longhorn", "https://charts.longhorn.io", chart="longhorn",
                                                        revision=spec.versions.longhorn, namespace="longhorn-system",
                                                        prune=False, values=_LONGHORN_VALUES), sort_keys=False),
        "longhorn-ingress-app.yaml": yaml.safe_dump(application("longhorn-ingress", url,
                                                                path=f"{g.platform_path}/longhorn-ingress",
                                                                namespace="longhorn-system"), sort_keys=False),
        "longhorn-rbac-app.yaml": yaml.safe_dump(application("longhorn-rbac", url, path=f"{g.platform_path}/longhorn-rbac",
                                                             namespace="longhorn-system"), sort_keys=False),
    }
    for name, text in longhorn.items():
        files[name + (DISABLED if state == "after" else "")] = "# Longhorn (block storage before Mayastor)\n" + text
    files["longhorn-ingress/ingress.yaml"] = _LONGHORN_INGRESS
    files["longhorn-rbac/rbac.yaml"] = _LONGHORN_RBAC
    files["mayastor/storageclass.yaml"] = ("# Applied by hand: kubectl apply -f kubernetes/platform/mayastor/storageclass.yaml\n"
                                           + yaml.safe_dump(_storage_class(spec), sort_keys=False))
    if state == "after":
        app_file("mayastor-app.yaml", application("mayastor", MAYASTOR_CHART_REPO, chart="mayastor",
                                                  revision=spec.versions.mayastor, namespace=spec.mayastor.namespace,
                                                  values=MAYASTOR_VALUES), "OpenEBS Mayastor (replaces Longhorn)")
    for rel, text in files.items():
        p = plat / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (root / "README.md").write_text("# homelab GitOps (falkit fixture)\n", encoding="utf-8")
    if not (root / ".git").exists():
        _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, *_identity(root), "commit", "-q", "-m", f"platform ({state} the migration)")
    return root


def make_remote(checkout: str | os.PathLike, remote: str | os.PathLike) -> Path:
    """The twin's GitOps *remote*: a bare repository at ``remote`` holding the checkout's ``main``
    (its default branch, the ``HEAD`` Argo CD Applications track), set as the checkout's ``origin``.
    The twin's Argo CD reads this remote, never the checkout — as the real one reads the operator's
    Git server — so falkit's commits count only once pushed and merged into the tracked revision.
    Kept when it exists (it is lab state)."""
    import subprocess

    def run(*args: str, cwd: Path) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)

    checkout, remote = Path(checkout), Path(remote)
    if not (remote / "HEAD").exists():
        remote.mkdir(parents=True, exist_ok=True)
        run("init", "-q", "--bare", "-b", "main", cwd=remote)
        run("push", "-q", str(remote), "main:main", cwd=checkout)
    have = subprocess.run(["git", "remote"], cwd=checkout, capture_output=True, text=True, check=True).stdout.split()
    run("remote", "set-url" if "origin" in have else "add", "origin", str(remote.resolve()), cwd=checkout)
    run("fetch", "-q", "origin", cwd=checkout)
    return remote
