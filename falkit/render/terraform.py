"""Terraform in the operator's GitOps checkout: the seed's ``infrastructure/terraform`` owns the VMs.

In the seed, Terraform (``infrastructure/terraform``: modules ``talos-vm`` and ``truenas-vm``,
``variables.tf``, ``locals.tf``, MetalLB in ``main.tf``) creates the VMs, and its rollback is
``git checkout <previous-commit>; terraform apply``. falkit changes the VMs through the Proxmox API;
left alone, the operator's next ``terraform apply`` would undo the migration (MACs back to
``52:54:00:10:30:XX``, no storage NIC) or destroy the new workers. So falkit changes the Terraform
code with the migration, as it changes Argo CD's manifests in Git:

- :func:`read_tree` reads every ``*.tf`` below the directory; :func:`manages_vms` says whether any
  ``proxmox_virtual_environment_vm`` resource (bpg/proxmox) is declared there.
- :func:`desired_edits` is the seed's "Terraform Module Changes", with the values of falkit's own
  plan (:func:`falkit.model.design.derive_design`): ``talos-vm`` and ``truenas-vm`` gain
  ``enable_storage_network``, ``storage_bridge``, ``storage_mac_address`` and a dynamic
  ``network_device`` for the storage NIC; ``longhorn_disk`` becomes ``mayastor_disk``; variables gain
  ``storage_bridge``, ``storage_gateway``, ``cilium_lb_ip_pool`` (replacing ``metallb_ip_range``),
  ``proxmox_mayastor_storage`` (replacing ``proxmox_longhorn_storage``), the workers with their
  ``storage_ip``; locals gain ``storage_mac_addresses`` and the MAC prefix changes; MetalLB's
  variables and resources are removed.
- :func:`plan_file` turns them into a :class:`falkit.render.gitops.GitEdit` per file. Every edit is located
  with the parse tree of python-hcl2 (top-level blocks, and attributes/blocks one level inside a
  block, by their line ranges): only the blocks and attributes falkit owns are rewritten, every other
  line, comment and block stays byte-for-byte. A block whose parsed value already equals the desired
  one is not touched, so a re-run plans nothing.
- :func:`value_checks` parses the files back (python-hcl2) and compares each value with the plan.
- :func:`run_plan` runs ``terraform plan -detailed-exitcode -no-color -input=false`` in the
  directory and :func:`parse_plan_output` lists the resources it would change. Exit codes, from
  hashicorp/terraform website/docs/cli/commands/plan.mdx @0c58e5c4680a1febd2884feca8291bb07b9d665a:
  0 = succeeded with an empty diff, 1 = error, 2 = succeeded with a non-empty diff. The resource
  lines are Terraform's human renderer's (internal/command/jsonformat/plan.go
  ``resourceChangeComment`` @0000ad574e75eb41625b9e3d55d124f4d91039be): ``# ADDR will be created``,
  ``will be updated in-place``, ``must be replaced``, ``will be destroyed`` …; the summary
  ``Plan: N to add, N to change, N to destroy.``. falkit never runs ``terraform init`` (it downloads
  providers) nor ``apply``.

Provider names used here and in the twin's fixture: bpg/terraform-provider-proxmox
docs/resources/virtual_environment_vm.md @014b59e04f30fc08bc512f68cf471fe2cfdc481c (``network_device
{ bridge, mac_address, model }``, ``disk { datastore_id, interface, size }``, ``memory { dedicated }``
in MB); siderolabs/terraform-provider-talos docs/resources/machine_configuration_apply.md
@000a3ec9946024587d4389e8c2a4463c6c53cf83.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Token, Tree

from ..model.design import LabDesign, design_of
from ..model.errors import FalkitError
from ..model.scrub import scrub_text, secrets_in_text
from ..model.spec import LabSpec
from .gitops import GitEdit

TERRAFORM_DIR = "infrastructure/terraform"
VM_RESOURCE = "proxmox_virtual_environment_vm"
COMMIT_MARK = "falkit: Terraform follows the migration"
PLAN_TIMEOUT_S = 600.0


class TerraformError(FalkitError, RuntimeError):
    """Terraform code falkit cannot read or edit."""


# ---------------------------------------------------------------------------------------------- parsing


def _hcl():
    import hcl2  # noqa: PLC0415 - python-hcl2 (MIT), pinned in pyproject; loaded (with lark) only when a .tf file is parsed

    return hcl2


def _options():
    return _hcl().SerializationOptions(with_comments=False, strip_string_quotes=True, explicit_blocks=False)


def loads(text: str) -> dict:
    """``text`` parsed by python-hcl2 into plain values (strings unquoted, expressions as ``${…}``)."""
    try:
        return _hcl().loads(text, serialization_options=_options())
    except Exception as exc:  # lark's UnexpectedInput and friends
        raise TerraformError(f"not valid HCL: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _label(node: Any) -> str:
    parts = []
    for t in node.scan_values(lambda v: isinstance(v, Token)):
        if t.type not in ("DBLQUOTE",):
            parts.append(str(t))
    return "".join(parts)


@dataclass(frozen=True)
class Item:
    """A block (key ``(type, *labels)``) or an attribute (key ``(name,)``) of a body, with its
    1-based inclusive line range."""

    key: tuple[str, ...]
    start: int
    end: int
    kind: str  # block | attribute


def _items(body: Any) -> list[Item]:
    out = []
    for c in body.children:
        if not isinstance(c, Tree):
            continue
        if c.data == "block":
            labels = [_label(x) for x in c.children if isinstance(x, Tree) and x.data in ("identifier", "string")]
            out.append(Item(tuple(labels), c.meta.line, c.meta.end_line, "block"))
        elif c.data == "attribute":
            out.append(Item((_label(c.children[0]),), c.meta.line, c.meta.end_line, "attribute"))
    return out


def _body_of(tree: Any, path: tuple[tuple[str, ...], ...]) -> Any:
    body = tree.children[0]
    for key in path:
        nxt = None
        for c in body.children:
            if isinstance(c, Tree) and c.data == "block":
                labels = tuple(_label(x) for x in c.children if isinstance(x, Tree) and x.data in ("identifier", "string"))
                if labels == key:
                    nxt = next(x for x in c.children if isinstance(x, Tree) and x.data == "body")
                    break
        if nxt is None:
            return None
        body = nxt
    return body


def items(text: str, path: tuple[tuple[str, ...], ...] = ()) -> list[Item] | None:
    """The items of the top-level body (``path=()``) or of the block at ``path``; None when absent."""
    try:
        tree = _hcl().parses_to_tree(text)
    except Exception as exc:
        raise TerraformError(f"not valid HCL: {type(exc).__name__}") from exc
    body = _body_of(tree, path)
    return None if body is None else _items(body)


def _value(text: str, kind: str) -> Any:
    """The parsed value of one item's text (an attribute is parsed inside a dummy block)."""
    return loads(f"x {{\n{text}\n}}\n" if kind == "attribute" else text)


# ---------------------------------------------------------------------------------------------- editing


@dataclass(frozen=True)
class Want:
    """One owned item of a body: ``key`` with the desired ``text`` (None: remove it). ``replaces``:
    an older key it takes the place of (a rename); ``after``: where to insert it when missing."""

    key: tuple[str, ...]
    text: str | None
    replaces: tuple[str, ...] | None = None
    after: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FileWant:
    rel: str  # relative to the Terraform directory
    path: tuple[tuple[str, ...], ...]  # the body edited: () top level, else the block's key path
    wants: tuple[Want, ...]


def apply_wants(text: str, path: tuple[tuple[str, ...], ...], wants: tuple[Want, ...]) -> tuple[str, list[str]]:
    """``text`` with ``wants`` applied to the body at ``path``; and the keys that changed."""
    changed: list[str] = []
    for w in wants:  # one at a time: line numbers are re-read after each edit
        found = items(text, path)
        if found is None:
            break
        by_key = {i.key: i for i in found}
        lines = text.splitlines(keepends=True)
        cur = by_key.get(w.key)
        old = by_key.get(w.replaces) if w.replaces else None
        indent = "  " * len(path)
        if w.text is None:
            targets = [x for x in (cur, old) if x is not None]
            for t in sorted(targets, key=lambda i: -i.start):
                end = t.end
                if t.kind == "block" and not path and end < len(lines) and not lines[end].strip():
                    end += 1  # the blank line after a removed top-level block
                del lines[t.start - 1:end]
                changed.append("remove " + " ".join(t.key))
            text = "".join(lines)
            continue
        new = "".join(indent + ln if ln.strip() else ln for ln in w.text.splitlines(keepends=True))
        if not new.endswith("\n"):
            new += "\n"
        kind = "attribute" if len(w.key) == 1 and "=" in w.text.split("\n", 1)[0] else "block"
        if cur is not None:
            have = "".join(lines[cur.start - 1:cur.end])
            if _value(have, cur.kind) == _value(w.text, kind) and old is None:
                continue
            lines[cur.start - 1:cur.end] = [new]
            if old is not None:
                del lines[old.start - 1:old.end]
            changed.append(" ".join(w.key))
        elif old is not None:
            lines[old.start - 1:old.end] = [new]
            changed.append(f"{' '.join(old.key)} -> {' '.join(w.key)}")
        else:
            anchor = by_key.get(w.after) if w.after else None
            if anchor is None and found:
                anchor = found[-1]
            sep = "\n" if kind == "block" else ""
            if anchor is None:  # an empty body / file
                pos = len(lines) if not path else _close_line(lines, path, text)
                lines[pos:pos] = [new]
            else:
                lines[anchor.end:anchor.end] = [sep + new]
            changed.append("add " + " ".join(w.key))
        text = "".join(lines)
    return text, changed


def _close_line(lines: list[str], path: tuple, text: str) -> int:
    raise TerraformError(f"cannot insert into the empty block {path}")


# ---------------------------------------------------------------------------------------------- the seed's changes


def _q(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _var(name: str, default: Any, type_: str = "string", description: str = "") -> str:
    lines = [f'variable "{name}" {{']
    if description:
        lines.append(f"  description = {_q(description)}")
    lines.append(f"  type        = {type_}")
    lines.append(f"  default     = {default if isinstance(default, str) and default.startswith(('[', '{', 'null')) else _q(default)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _obj(d: dict) -> str:
    return "{ " + ", ".join(f"{k} = {_q(v)}" for k, v in d.items()) + " }"


def _map(d: dict[str, str], indent: str = "") -> str:
    width = max((len(k) for k in d), default=0) + 2
    body = "".join(f'{indent}  {_q(k):<{width}} = {_q(v)}\n' for k, v in d.items())
    return "{\n" + body + indent + "}"


@dataclass(frozen=True)
class Desired:
    """The values the Terraform code must hold after the migration (from falkit's design)."""

    mac_prefix: str
    storage_mac_prefix: str
    mac_addresses: dict[str, str]
    storage_mac_addresses: dict[str, str]
    network_bridge: str
    network_gateway: str
    storage_bridge: str
    storage_gateway: str
    cilium_lb_ip_pool: str
    proxmox_mayastor_storage: str
    control_plane: dict[str, Any]
    workers: list[dict[str, Any]] = field(default_factory=list)


def desired(spec: LabSpec, design: LabDesign | None = None) -> Desired:
    design = design or design_of(spec)
    cluster = [v for v in design.vms if v.role in ("control-plane", "worker")]
    cp = design.control_plane
    workers = design.workers
    data = next((d.storage for w in workers for d in w.disks if d.role == "data"), spec.cluster.vm_defaults.data_storage)
    mgmt, st = spec.networks.management, spec.networks.storage
    return Desired(
        mac_prefix=mgmt.mac_prefix, storage_mac_prefix=st.mac_prefix,
        mac_addresses={v.name: v.nics[0].mac or "" for v in cluster},
        storage_mac_addresses={w.name: w.storage_nic.mac or "" for w in workers if w.storage_nic},
        network_bridge=mgmt.bridge, network_gateway=mgmt.gateway, storage_bridge=st.bridge, storage_gateway=st.gateway,
        cilium_lb_ip_pool=design.lb_pool_text, proxmox_mayastor_storage=data,
        control_plane={"name": cp.name, "vm_id": cp.vmid, "ip": cp.ip, "cores": cp.cores, "memory": cp.memory_gb * 1024,
                       "os_disk_size": next(d.size_gb for d in cp.disks if d.role == "os")},
        workers=[{"name": w.name, "vm_id": w.vmid, "ip": w.ip, "storage_ip": w.storage_ip, "cores": w.cores,
                  "memory": w.memory_gb * 1024, "os_disk_size": next(d.size_gb for d in w.disks if d.role == "os"),
                  "mayastor_disk_size": next((d.size_gb for d in w.disks if d.role == "data"), 0)} for w in workers],
    )


_WORKER_TYPE = """list(object({
    name               = string
    vm_id              = number
    ip                 = string
    storage_ip         = string
    cores              = number
    memory             = number
    os_disk_size       = number
    mayastor_disk_size = number
  }))"""

_STORAGE_NIC_VARS = (
    Want(("variable", "enable_storage_network"),
         'variable "enable_storage_network" {\n  description = "Add a second NIC on the storage network"\n'
         "  type        = bool\n  default     = false\n}\n"),
    Want(("variable", "storage_bridge"),
         'variable "storage_bridge" {\n  description = "Bridge for the storage network"\n  type        = string\n'
         '  default     = "vmbr1"\n}\n'),
    Want(("variable", "storage_mac_address"),
         'variable "storage_mac_address" {\n  description = "MAC of the storage NIC"\n  type        = string\n'
         "  default     = null\n}\n"),
)

_STORAGE_NIC_BLOCK = """\
dynamic "network_device" {
  for_each = var.enable_storage_network ? [1] : []
  content {
    bridge      = var.storage_bridge
    mac_address = var.storage_mac_address
    model       = "virtio"
  }
}
"""

_MAYASTOR_DISK_BLOCK = """\
dynamic "disk" {
  for_each = var.mayastor_disk == null ? [] : [var.mayastor_disk]
  content {
    datastore_id = disk.value.datastore_id
    interface    = "scsi1"
    size         = disk.value.size
    discard      = "on"
    ssd          = true
  }
}
"""


def desired_edits(spec: LabSpec, design: LabDesign | None = None) -> tuple[FileWant, ...]:
    """The seed's "Terraform Module Changes" as edits of the seed's files (see the module docstring)."""
    d = desired(spec, design)
    workers = "[\n" + "".join(f"    {_obj(w)},\n" for w in d.workers) + "  ]"
    vm = ("resource", VM_RESOURCE, "this")
    return (
        FileWant("variables.tf", (), (
            Want(("variable", "proxmox_mayastor_storage"),
                 _var("proxmox_mayastor_storage", d.proxmox_mayastor_storage, description="Datastore for the workers' Mayastor disks"),
                 replaces=("variable", "proxmox_longhorn_storage")),
            Want(("variable", "network_bridge"), _var("network_bridge", d.network_bridge)),
            Want(("variable", "network_gateway"), _var("network_gateway", d.network_gateway)),
            Want(("variable", "storage_bridge"), _var("storage_bridge", d.storage_bridge, description="Proxmox bridge for the storage network"),
                 after=("variable", "network_gateway")),
            Want(("variable", "storage_gateway"), _var("storage_gateway", d.storage_gateway, description="Gateway of the storage network"),
                 after=("variable", "storage_bridge")),
            Want(("variable", "control_plane"),
                 'variable "control_plane" {\n  type = object({ name = string, vm_id = number, ip = string, cores = number, '
                 'memory = number, os_disk_size = number })\n  default = ' + _obj(d.control_plane) + "\n}\n"),
            Want(("variable", "workers"), f'variable "workers" {{\n  type = {_WORKER_TYPE}\n  default = {workers}\n}}\n'),
            Want(("variable", "cilium_lb_ip_pool"),
                 _var("cilium_lb_ip_pool", d.cilium_lb_ip_pool, description="IP range of Cilium's LoadBalancer pool"),
                 replaces=("variable", "metallb_ip_range")),
            Want(("variable", "metallb_version"), None),
        )),
        FileWant("locals.tf", (("locals",),), (
            Want(("mac_prefix",), f"mac_prefix = {_q(d.mac_prefix)}"),
            Want(("mac_addresses",), f"mac_addresses = {_map(d.mac_addresses)}"),
            Want(("storage_mac_prefix",), f"storage_mac_prefix = {_q(d.storage_mac_prefix)}", after=("mac_addresses",)),
            Want(("storage_mac_addresses",), f"storage_mac_addresses = {_map(d.storage_mac_addresses)}",
                 after=("storage_mac_prefix",)),
        )),
        FileWant("main.tf", (("module", "talos_worker"),), (
            Want(("mayastor_disk",), "mayastor_disk  = { datastore_id = var.proxmox_mayastor_storage, size = each.value.mayastor_disk_size }",
                 replaces=("longhorn_disk",)),
            Want(("enable_storage_network",), "enable_storage_network = true", after=("mac_address",)),
            Want(("storage_bridge",), "storage_bridge         = var.storage_bridge", after=("enable_storage_network",)),
            Want(("storage_mac_address",), "storage_mac_address    = local.storage_mac_addresses[each.key]",
                 after=("storage_bridge",)),
        )),
        FileWant("main.tf", (), tuple(Want(k, None) for k in (
            ("resource", "helm_release", "metallb"), ("resource", "kubernetes_manifest", "metallb_pool"),
            ("resource", "kubernetes_manifest", "metallb_l2")))),
        FileWant("modules/talos-vm/variables.tf", (), (
            *_STORAGE_NIC_VARS,
            Want(("variable", "mayastor_disk"),
                 'variable "mayastor_disk" {\n  description = "Raw data disk for Mayastor (workers only)"\n'
                 "  type        = object({ datastore_id = string, size = number })\n  default     = null\n}\n",
                 replaces=("variable", "longhorn_disk")),
        )),
        FileWant("modules/talos-vm/main.tf", (vm,), (
            Want(("dynamic", "disk"), _MAYASTOR_DISK_BLOCK),
            Want(("dynamic", "network_device"), _STORAGE_NIC_BLOCK, after=("network_device",)),
        )),
        FileWant("modules/truenas-vm/variables.tf", (), _STORAGE_NIC_VARS),
        FileWant("modules/truenas-vm/main.tf", (vm,), (
            Want(("dynamic", "network_device"), _STORAGE_NIC_BLOCK, after=("network_device",)),
        )),
    )


# ---------------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class TerraformTree:
    """The ``*.tf`` files of ``root`` (``{relative path: text}``) and the checkout they are in."""

    checkout: Path
    root: Path
    files: dict[str, str]

    @property
    def rel_root(self) -> str:
        return str(self.root.relative_to(self.checkout))


def read_tree(checkout: Path, tf_dir: str = TERRAFORM_DIR) -> TerraformTree | None:
    """None when ``checkout/tf_dir`` has no ``*.tf`` file."""
    root = checkout / tf_dir
    if not root.is_dir():
        return None
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.tf"))
             if ".terraform" not in p.relative_to(root).parts}
    return TerraformTree(checkout, root, files) if files else None


def vm_resources(tree: TerraformTree) -> list[str]:
    """``<file>: <type>.<name>`` of every ``proxmox_virtual_environment_vm`` resource."""
    out = []
    for rel, text in tree.files.items():
        for res in loads(text).get("resource") or []:
            for name in (res.get(VM_RESOURCE) or {}):
                out.append(f"{rel}: {VM_RESOURCE}.{name}")
    return out


def plan_files(tree: TerraformTree, spec: LabSpec, design: LabDesign | None = None) -> list[tuple[GitEdit, list[str]]]:
    """One :class:`GitEdit` per file that changes (paths relative to the checkout) and what changes."""
    texts = dict(tree.files)
    changed: dict[str, list[str]] = {}
    for fw in desired_edits(spec, design):
        if fw.rel not in texts:
            continue
        new, what = apply_wants(texts[fw.rel], fw.path, fw.wants)
        if what:
            loads(new)  # the edited file still parses
            texts[fw.rel] = new
            changed.setdefault(fw.rel, []).extend(what)
    out = []
    for rel, what in changed.items():
        if texts[rel] != tree.files[rel]:
            path = f"{tree.rel_root}/{rel}"
            out.append((GitEdit(path, tree.files[rel], texts[rel], message=COMMIT_MARK), what))
    return out


# ---------------------------------------------------------------------------------------------- verification


def _blocks(doc: dict, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for b in doc.get(kind) or []:
        out.update(b)
    return out


def observed_values(tree: TerraformTree) -> dict[str, Any]:
    """The values :func:`value_checks` compares, read from the parsed files (None: absent)."""
    f = {rel: loads(t) for rel, t in tree.files.items()}
    variables = _blocks(f.get("variables.tf", {}), "variable")
    local = _blocks(f.get("locals.tf", {}), "locals")
    modules = _blocks(f.get("main.tf", {}), "module")
    resources = [(t, n) for rel, doc in f.items() for r in doc.get("resource") or [] for t, ns in r.items() for n in ns]
    tvars = _blocks(f.get("modules/talos-vm/variables.tf", {}), "variable")
    nvars = _blocks(f.get("modules/truenas-vm/variables.tf", {}), "variable")
    worker = modules.get("talos_worker") or {}

    def default(name: str) -> Any:
        return (variables.get(name) or {}).get("default")

    return {
        "locals.mac_prefix": local.get("mac_prefix"),
        "locals.storage_mac_prefix": local.get("storage_mac_prefix"),
        "locals.mac_addresses": local.get("mac_addresses"),
        "locals.storage_mac_addresses": local.get("storage_mac_addresses"),
        **{f"var.{n}": default(n) for n in ("network_bridge", "network_gateway", "storage_bridge", "storage_gateway",
                                            "cilium_lb_ip_pool", "proxmox_mayastor_storage", "control_plane", "workers")},
        "removed variables": sorted(n for n in ("metallb_ip_range", "metallb_version", "proxmox_longhorn_storage") if n in variables),
        "MetalLB resources": sorted(f"{t}.{n}" for t, n in resources if "metallb" in f"{t}.{n}"),
        "talos-vm variables": sorted(n for n in ("enable_storage_network", "storage_bridge", "storage_mac_address",
                                                 "mayastor_disk", "longhorn_disk") if n in tvars),
        "truenas-vm variables": sorted(n for n in ("enable_storage_network", "storage_bridge", "storage_mac_address") if n in nvars),
        "module talos_worker storage NIC": [worker.get("enable_storage_network"), worker.get("storage_mac_address")],
    }


def expected_values(spec: LabSpec, design: LabDesign | None = None) -> dict[str, Any]:
    d = desired(spec, design)
    return {
        "locals.mac_prefix": d.mac_prefix, "locals.storage_mac_prefix": d.storage_mac_prefix,
        "locals.mac_addresses": d.mac_addresses, "locals.storage_mac_addresses": d.storage_mac_addresses,
        "var.network_bridge": d.network_bridge, "var.network_gateway": d.network_gateway,
        "var.storage_bridge": d.storage_bridge, "var.storage_gateway": d.storage_gateway,
        "var.cilium_lb_ip_pool": d.cilium_lb_ip_pool, "var.proxmox_mayastor_storage": d.proxmox_mayastor_storage,
        "var.control_plane": d.control_plane, "var.workers": d.workers,
        "removed variables": [], "MetalLB resources": [],
        "talos-vm variables": ["enable_storage_network", "mayastor_disk", "storage_bridge", "storage_mac_address"],
        "truenas-vm variables": ["enable_storage_network", "storage_bridge", "storage_mac_address"],
        "module talos_worker storage NIC": [True, "${local.storage_mac_addresses[each.key]}"],
    }


# ---------------------------------------------------------------------------------------------- terraform plan


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # create | update | replace | destroy

    @property
    def destroys(self) -> bool:
        return self.action in ("destroy", "replace")


@dataclass(frozen=True)
class PlanResult:
    exit_code: int  # -detailed-exitcode: 0 no changes, 1 error, 2 changes
    changes: tuple[ResourceChange, ...]
    summary: str
    error: str = ""


_ACTIONS = (("will be created", "create"), ("will be updated in-place", "update"), ("must be replaced", "replace"),
            ("is tainted, so must be replaced", "replace"), ("will be replaced, as requested", "replace"),
            ("will be replaced due to changes in replace_triggered_by", "replace"), ("will be destroyed", "destroy"))
_HEAD = re.compile(r"^\s*# (?P<addr>\S+(?: \(deposed object \S+\))?) (?P<what>.+)$")


def parse_plan_output(text: str) -> tuple[tuple[ResourceChange, ...], str]:
    """The proposed resource changes of ``terraform plan -no-color`` output (drift notes above
    "Terraform will perform the following actions:" are not changes) and its ``Plan:`` line."""
    out: list[ResourceChange] = []
    summary = ""
    started = "Terraform will perform the following actions:" not in text
    for line in text.splitlines():
        if line.startswith("Terraform will perform the following actions:"):
            started = True
            continue
        if line.startswith("Plan: "):
            summary = line.strip()
        m = _HEAD.match(line) if started else None
        if m:
            action = next((a for phrase, a in _ACTIONS if m["what"].startswith(phrase)), None)
            if action:
                out.append(ResourceChange(m["addr"], action))
    return tuple(out), summary


def terraform_binary() -> str | None:
    return shutil.which("terraform")


def run_plan(root: Path, binary: str, timeout: float = PLAN_TIMEOUT_S) -> PlanResult:
    """``terraform plan -detailed-exitcode -no-color -input=false -lock=false`` in ``root``
    (read-only: no ``-out``, the state is not written)."""
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
    try:
        proc = subprocess.run([binary, "plan", "-detailed-exitcode", "-no-color", "-input=false", "-lock=false"],
                              cwd=root, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return PlanResult(1, (), "", f"terraform plan did not finish within {timeout:g} s")
    changes, summary = parse_plan_output(proc.stdout)
    err = ""
    if proc.returncode not in (0, 2):
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        err = scrub_text(tail, secrets_in_text(tail))
    return PlanResult(proc.returncode, changes, summary, err)
