"""The twin's GitOps repository: a git repository with the seed's layout under
``spec.gitops.platform_path`` (the platform app-of-apps' children, Traefik, cert-manager, External
Secrets, the media apps, Longhorn's three Applications, Mayastor's StorageClass), in the state
before or after the migration. The twin's supervisor creates it under its state dir and its Argo
CD syncs from it; tests build their own. falkit's runbook never creates it for a live lab: there
it works on the operator's checkout (:mod:`falkit.render.gitops`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .applications import DISABLED_SUFFIX as DISABLED
from .applications import application
from .seed import BEFORE_LONGHORN_DISK_GB

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
    if state == "before":
        write_terraform(root, spec)  # the seed's infrastructure/terraform (see below)
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


# ============================================================================================== Terraform
# The seed's ``infrastructure/terraform`` ("Terraform Module Changes", "Deployment Order": ``cd
# infrastructure/terraform; terraform init; terraform plan; terraform apply``) in its state BEFORE the
# migration: one control plane and one worker on 10.30.0.0/24 with the MAC prefix 52:54:00:10:30:XX,
# the workers' ``longhorn_disk`` on ``proxmox_longhorn_storage``, MetalLB (release, pool
# ``metallb_ip_range`` 10.30.0.65-10.30.0.100, L2 advertisement) in ``main.tf``, and the TrueNAS module
# call commented out ("Deploy TrueNAS VM (currently commented out)"). Resource and argument names are
# the providers' own:
# - bpg/proxmox ``proxmox_virtual_environment_vm`` (``node_name``, ``vm_id``, ``cpu { cores }``,
#   ``memory { dedicated }`` in MB, ``disk { datastore_id, interface, size }`` in GB, ``network_device
#   { bridge, mac_address, model }``, ``cdrom { file_id }``, ``operating_system { type }``, ``agent``):
#   bpg/terraform-provider-proxmox docs/resources/virtual_environment_vm.md
#   @014b59e04f30fc08bc512f68cf471fe2cfdc481c;
# - siderolabs/talos ``talos_machine_secrets``, ``data "talos_machine_configuration"``,
#   ``talos_machine_configuration_apply`` (``client_configuration``, ``machine_configuration_input``,
#   ``node``, ``config_patches``), ``talos_machine_bootstrap``: siderolabs/terraform-provider-talos
#   docs/resources/machine_configuration_apply.md @000a3ec9946024587d4389e8c2a4463c6c53cf83 and its
#   docs/resources/{machine_secrets,machine_bootstrap}.md, docs/data-sources/machine_configuration.md.
# The values come from the spec's ``previous`` section (nodes, network, MetalLB pool) and the
# cluster's sizes, as the twin's "before" lab has them (falkit/twin/supervisor.py).

TERRAFORM_DIR = "infrastructure/terraform"

_TF_GITIGNORE = """\
.terraform/
*.tfstate
*.tfstate.*
*.tfplan
"""

_TF_TALOS_VM_MAIN = """\
# One Talos VM: OS disk, optional Longhorn data disk, one NIC on the management bridge; boots the
# Talos ISO into maintenance mode (its DHCP reservation follows mac_address).
resource "proxmox_virtual_environment_vm" "this" {
  name      = var.name
  node_name = var.node_name
  vm_id     = var.vm_id
  tags      = ["talos", "terraform"]

  on_boot       = true
  scsi_hardware = "virtio-scsi-single"

  agent {
    enabled = true
  }

  cpu {
    cores = var.cores
    type  = "host"
  }

  memory {
    dedicated = var.memory
  }

  cdrom {
    file_id   = var.iso_file_id
    interface = "ide2"
  }

  disk {
    datastore_id = var.os_disk.datastore_id
    interface    = "scsi0"
    size         = var.os_disk.size
    discard      = "on"
    ssd          = true
  }

  dynamic "disk" {
    for_each = var.longhorn_disk == null ? [] : [var.longhorn_disk]
    content {
      datastore_id = disk.value.datastore_id
      interface    = "scsi1"
      size         = disk.value.size
      discard      = "on"
      ssd          = true
    }
  }

  network_device {
    bridge      = var.network_bridge
    mac_address = var.mac_address
    model       = "virtio"
  }

  operating_system {
    type = "l26"
  }
}
"""

_TF_TALOS_VM_VARIABLES = """\
variable "name" {
  type = string
}

variable "node_name" {
  type = string
}

variable "vm_id" {
  type = number
}

variable "cores" {
  type    = number
  default = 2
}

variable "memory" {
  description = "Dedicated memory in MB"
  type        = number
}

variable "iso_file_id" {
  type = string
}

variable "os_disk" {
  type = object({ datastore_id = string, size = number })
}

variable "longhorn_disk" {
  description = "Data disk for Longhorn (workers only)"
  type        = object({ datastore_id = string, size = number })
  default     = null
}

variable "network_bridge" {
  type    = string
  default = "vmbr0"
}

variable "mac_address" {
  type = string
}
"""

_TF_TALOS_VM_OUTPUTS = """\
output "vm_id" {
  value = proxmox_virtual_environment_vm.this.vm_id
}

output "mac_addresses" {
  value = proxmox_virtual_environment_vm.this.mac_addresses
}
"""

_TF_TRUENAS_VM_MAIN = """\
# TrueNAS SCALE: OS disk, one NIC on the management bridge.
resource "proxmox_virtual_environment_vm" "this" {
  name      = var.name
  node_name = var.node_name
  vm_id     = var.vm_id
  tags      = ["truenas", "terraform"]

  on_boot       = true
  scsi_hardware = "virtio-scsi-single"

  cpu {
    cores = var.cores
    type  = "host"
  }

  memory {
    dedicated = var.memory
  }

  cdrom {
    file_id   = var.iso_file_id
    interface = "ide2"
  }

  disk {
    datastore_id = var.datastore_id
    interface    = "scsi0"
    size         = var.os_disk_size
  }

  network_device {
    bridge      = var.network_bridge
    mac_address = var.mac_address
    model       = "virtio"
  }

  operating_system {
    type = "l26"
  }
}
"""

_TF_TRUENAS_VM_VARIABLES = """\
variable "name" {
  type    = string
  default = "truenas"
}

variable "node_name" {
  type = string
}

variable "vm_id" {
  type = number
}

variable "cores" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 8192
}

variable "iso_file_id" {
  type = string
}

variable "datastore_id" {
  type = string
}

variable "os_disk_size" {
  type    = number
  default = 32
}

variable "network_bridge" {
  type    = string
  default = "vmbr0"
}

variable "mac_address" {
  type = string
}
"""

_TF_MAIN = """\
terraform {{
  required_providers {{
    proxmox = {{
      source  = "bpg/proxmox"
      version = "~> 0.86"
    }}
    talos = {{
      source  = "siderolabs/talos"
      version = "~> 0.9"
    }}
    helm = {{
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }}
    kubernetes = {{
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }}
  }}
}}

provider "proxmox" {{
  endpoint  = var.proxmox_endpoint
  api_token = var.proxmox_api_token
}}

provider "helm" {{
  kubernetes = {{
    config_path = var.kubeconfig_path
  }}
}}

provider "kubernetes" {{
  config_path = var.kubeconfig_path
}}

# ---------------------------------------------------------------- VMs

module "talos_cp" {{
  source = "./modules/talos-vm"

  name           = var.control_plane.name
  node_name      = var.proxmox_node
  vm_id          = var.control_plane.vm_id
  cores          = var.control_plane.cores
  memory         = var.control_plane.memory
  iso_file_id    = local.talos_iso
  os_disk        = {{ datastore_id = var.proxmox_storage, size = var.control_plane.os_disk_size }}
  network_bridge = var.network_bridge
  mac_address    = local.mac_addresses[var.control_plane.name]
}}

module "talos_worker" {{
  source   = "./modules/talos-vm"
  for_each = {{ for w in var.workers : w.name => w }}

  name           = each.value.name
  node_name      = var.proxmox_node
  vm_id          = each.value.vm_id
  cores          = each.value.cores
  memory         = each.value.memory
  iso_file_id    = local.talos_iso
  os_disk        = {{ datastore_id = var.proxmox_storage, size = each.value.os_disk_size }}
  longhorn_disk  = {{ datastore_id = var.proxmox_longhorn_storage, size = each.value.longhorn_disk_size }}
  network_bridge = var.network_bridge
  mac_address    = local.mac_addresses[each.key]
}}

# TrueNAS (currently commented out)
# module "truenas" {{
#   source         = "./modules/truenas-vm"
#   node_name      = var.proxmox_node
#   vm_id          = 300
#   iso_file_id    = "local:iso/TrueNAS-SCALE.iso"
#   datastore_id   = var.proxmox_storage
#   network_bridge = var.network_bridge
#   mac_address    = "${{local.mac_prefix}}:20"
# }}

# ---------------------------------------------------------------- Talos

resource "talos_machine_secrets" "this" {{
  talos_version = var.talos_version
}}

data "talos_machine_configuration" "controlplane" {{
  cluster_name     = var.cluster_name
  cluster_endpoint = "https://${{var.control_plane.ip}}:6443"
  machine_type     = "controlplane"
  machine_secrets  = talos_machine_secrets.this.machine_secrets
  talos_version    = var.talos_version
}}

data "talos_machine_configuration" "worker" {{
  cluster_name     = var.cluster_name
  cluster_endpoint = "https://${{var.control_plane.ip}}:6443"
  machine_type     = "worker"
  machine_secrets  = talos_machine_secrets.this.machine_secrets
  talos_version    = var.talos_version
}}

resource "talos_machine_configuration_apply" "controlplane" {{
  client_configuration        = talos_machine_secrets.this.client_configuration
  machine_configuration_input = data.talos_machine_configuration.controlplane.machine_configuration
  node                        = var.control_plane.ip
  depends_on                  = [module.talos_cp]
}}

resource "talos_machine_configuration_apply" "worker" {{
  for_each = {{ for w in var.workers : w.name => w }}

  client_configuration        = talos_machine_secrets.this.client_configuration
  machine_configuration_input = data.talos_machine_configuration.worker.machine_configuration
  node                        = each.value.ip
  depends_on                  = [module.talos_worker]
}}

resource "talos_machine_bootstrap" "this" {{
  client_configuration = talos_machine_secrets.this.client_configuration
  node                 = var.control_plane.ip
  depends_on           = [talos_machine_configuration_apply.controlplane]
}}

# ---------------------------------------------------------------- MetalLB

resource "helm_release" "metallb" {{
  name             = "metallb"
  repository       = "https://metallb.github.io/metallb"
  chart            = "metallb"
  version          = var.metallb_version
  namespace        = "metallb-system"
  create_namespace = true
}}

resource "kubernetes_manifest" "metallb_pool" {{
  manifest = {{
    apiVersion = "metallb.io/v1beta1"
    kind       = "IPAddressPool"
    metadata   = {{ name = "default-pool", namespace = "metallb-system" }}
    spec       = {{ addresses = [var.metallb_ip_range] }}
  }}
  depends_on = [helm_release.metallb]
}}

resource "kubernetes_manifest" "metallb_l2" {{
  manifest = {{
    apiVersion = "metallb.io/v1beta1"
    kind       = "L2Advertisement"
    metadata   = {{ name = "default", namespace = "metallb-system" }}
    spec       = {{ ipAddressPools = ["default-pool"] }}
  }}
  depends_on = [kubernetes_manifest.metallb_pool]
}}
"""


def _tf_mac(prefix: str, ip: str) -> str:
    """The seed's MAC scheme: the prefix and the IP's last octet as two decimal digits."""
    return f"{prefix}:{int(ip.rsplit('.', 1)[1]):02d}"


def terraform_files(spec: Any) -> dict[str, str]:
    """The seed's ``infrastructure/terraform`` before the migration, ``{relative path: text}``
    (relative to the repository root)."""
    prev = spec.previous
    net = prev.network
    ips = {n.vmid: n.ip for n in prev.nodes}
    cp = spec.cluster.control_plane[0]
    workers = [w for w in spec.cluster.workers if w.vmid in ips]
    d = spec.cluster.vm_defaults
    cp_ip = ips.get(cp.vmid, cp.ip)
    nodes = [(cp.name, cp_ip)] + [(w.name, ips[w.vmid]) for w in workers]
    worker_rows = "\n".join(
        f'    {{ name = "{w.name}", vm_id = {w.vmid}, ip = "{ips[w.vmid]}", cores = {w.cores}, '
        f'memory = {w.memory_gb * 1024}, os_disk_size = {w.os_disk_gb}, longhorn_disk_size = {BEFORE_LONGHORN_DISK_GB} }},'
        for w in workers)
    width = max(len(n) for n, _ in nodes) + 2
    macs = "\n".join(f'    {f"{chr(34)}{n}{chr(34)}":<{width}} = "{_tf_mac(net.mac_prefix, ip)}"' for n, ip in nodes)
    variables = f"""\
variable "proxmox_endpoint" {{
  description = "Proxmox VE API URL"
  type        = string
  default     = "https://{spec.host.node}.home.arpa:8006/"
}}

variable "proxmox_api_token" {{
  description = "Proxmox VE API token (user@realm!name=secret), from TF_VAR_proxmox_api_token"
  type        = string
  sensitive   = true
}}

variable "kubeconfig_path" {{
  description = "The cluster's admin kubeconfig (talosctl kubeconfig), for the helm and kubernetes providers"
  type        = string
  default     = "~/.kube/config"
}}

variable "proxmox_node" {{
  type    = string
  default = "{spec.host.node}"
}}

variable "proxmox_storage" {{
  description = "Datastore for the VMs' OS disks"
  type        = string
  default     = "{d.os_storage}"
}}

variable "proxmox_longhorn_storage" {{
  description = "Datastore for the workers' Longhorn disks"
  type        = string
  default     = "{d.data_storage}"
}}

variable "network_bridge" {{
  type    = string
  default = "{net.bridge}"
}}

variable "network_gateway" {{
  type    = string
  default = "{net.gateway}"
}}

variable "cluster_name" {{
  type    = string
  default = "{spec.cluster.name}"
}}

variable "talos_version" {{
  type    = string
  default = "v{spec.versions.talos}"
}}

variable "control_plane" {{
  type = object({{ name = string, vm_id = number, ip = string, cores = number, memory = number, os_disk_size = number }})
  default = {{
    name = "{cp.name}", vm_id = {cp.vmid}, ip = "{cp_ip}", cores = {cp.cores}, memory = {cp.memory_gb * 1024}, os_disk_size = {cp.os_disk_gb}
  }}
}}

variable "workers" {{
  type = list(object({{
    name               = string
    vm_id              = number
    ip                 = string
    cores              = number
    memory             = number
    os_disk_size       = number
    longhorn_disk_size = number
  }}))
  default = [
{worker_rows}
  ]
}}

variable "metallb_version" {{
  type    = string
  default = "{spec.versions.metallb}"
}}

variable "metallb_ip_range" {{
  description = "MetalLB L2 pool"
  type        = string
  default     = "{prev.metallb_pool.start}-{prev.metallb_pool.stop}"
}}
"""
    locals_tf = f"""\
locals {{
  talos_iso = "local:iso/talos-{spec.versions.talos}-metal-amd64.iso"

  # MAC scheme {net.mac_prefix}:XX, XX = the node's last IP octet (the DHCP reservations follow them)
  mac_prefix = "{net.mac_prefix}"
  mac_addresses = {{
{macs}
  }}
}}
"""
    base = TERRAFORM_DIR
    return {
        f"{base}/.gitignore": _TF_GITIGNORE,
        f"{base}/main.tf": _TF_MAIN.format(),
        f"{base}/variables.tf": variables,
        f"{base}/locals.tf": locals_tf,
        f"{base}/modules/talos-vm/main.tf": _TF_TALOS_VM_MAIN,
        f"{base}/modules/talos-vm/variables.tf": _TF_TALOS_VM_VARIABLES,
        f"{base}/modules/talos-vm/outputs.tf": _TF_TALOS_VM_OUTPUTS,
        f"{base}/modules/truenas-vm/main.tf": _TF_TRUENAS_VM_MAIN,
        f"{base}/modules/truenas-vm/variables.tf": _TF_TRUENAS_VM_VARIABLES,
    }


def write_terraform(root: Path, spec: Any) -> None:
    """Write :func:`terraform_files` into the repository at ``root`` (not committed here)."""
    if getattr(spec, "previous", None) is None:
        return  # a new build: no earlier Terraform to migrate
    for rel, text in terraform_files(spec).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
