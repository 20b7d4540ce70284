"""``falkit doctor``: a read-only readiness report for a target (the live lab or the twin).

One row per check, each with its status and, when it is not ``ok``, the fix:

==================  ==========================================================================
check               what it reads (nothing is written anywhere)
==================  ==========================================================================
proxmox             ``GET /version`` through the same proxmoxer client falkit's steps use
privileges          ``GET /access/permissions`` (the token's effective privileges on ``/``)
                    against the minimal role in ``falkit/data/pve-role.json``
storages            ``GET /nodes/{node}/storage``: every ``host.storages`` entry and ``local``
talos-iso           ``GET .../storage/local/content?content=iso``: the Talos ISO of ``versions.talos``
plex-image          (when Plex is enabled and ``--plex-image`` is not empty; default Plex's OCI image)
                    Proxmox VE 9.1 or later (``oci-registry-pull`` is new in 9.1: block before);
                    ``GET .../storage/local/content?content=vztmpl``: the pulled archive ok, else
                    warn (60-truenas-plex pulls it; the node must reach the registry)
lxc-template        (``--plex-image ""``: Plex installed by hand in a Debian container)
                    ``GET .../storage/{s}/content``: Plex's LXC template: ok
                    on the node; warn when ``GET /nodes/{node}/aplinfo`` (the appliance index)
                    has it (60-truenas-plex downloads it); block with ``pveam download`` otherwise
talosctl, helm      the ones the run uses (on the twin its stand-ins, first on ``PATH``);
                    ``talosctl version --client --short`` within ``versions.talos``'s minor;
                    ``helm version --short`` whose Kubernetes skew covers ``versions.kubernetes``
talos-secrets       when the cluster already exists (``spec.previous`` and its VMs are on
                    Proxmox): the private dir holds ``talos-secrets.yaml`` or a file 30-talos
                    imports (``secrets.yaml``, ``controlplane.yaml``, ``terraform.tfstate``;
                    :func:`falkit.steps.talos.import_secrets`, the same function)
gitops-remote       the checkout, its ``origin`` reachable (``git ls-remote``) and writable
                    (``git push --dry-run``; a local remote: the directory is writable)
addresses           how each new Talos VM gets its planned address in maintenance mode
==================  ==========================================================================

Status ``block`` makes the command exit 1; ``warn`` informs (falkit can proceed, e.g. it downloads a
missing ISO itself). Secrets never appear in a row. Version rules (cited):

* talosctl: Talos' support matrix pairs each talosctl minor with the same Talos minor
  (docs "Support Matrix", siderolabs/talos ``website/content/v1.11/introduction/support-matrix.md``);
  falkit renders machine configs for ``versions.talos``, so another minor blocks.
* helm: "Helm is assumed to be compatible with n-3 versions of Kubernetes it was compiled against"
  (helm.sh/docs/topics/version_skew). Helm 3.y is compiled against Kubernetes 1.(y+15) (3.0 ->
  1.16 ... 3.19 -> 1.34, the same page's table); Helm 4.y against 1.(34+y) (4.0.0 -> 1.34.1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..clients.target import connect
from ..model.design import design_of
from ..model.errors import FalkitError, StepError
from ..model.spec import LabSpec, load_spec
from ..steps.talos import IMPORT_FILES, SECRETS_FILE, import_secrets, where_secrets_go
from ..steps.truenas_plex import DEFAULT_PLEX_IMAGE, DEFAULT_TEMPLATE, IMAGE_STORAGE, oci_volid
from ..steps.vms import ISO_STORAGE, iso_name

ROLE_FILE = Path(__file__).resolve().parents[1] / "data" / "pve-role.json"
STATUSES = ("ok", "warn", "block")
TOOL_TIMEOUT_S = 20
GIT_TIMEOUT_S = 20


@dataclass(frozen=True)
class Row:
    """One check: ``status`` is ok | warn | block; ``fix`` says what to do when it is not ok."""

    check: str
    status: str
    detail: str
    fix: str = ""


def minimal_role() -> dict[str, Any]:
    """The role falkit's token needs (``falkit/data/pve-role.json``): ``role`` (name),
    ``privileges`` (a list, or a dict privilege -> why) and ``pveum`` (the commands that create it)."""
    data = json.loads(ROLE_FILE.read_text(encoding="utf-8"))
    privs = data.get("privileges") or data.get("privs") or []
    pveum = data.get("pveum") or []
    if isinstance(pveum, str):
        pveum = pveum.format(privs=",".join(sorted(privs)), token=data.get("token", "root@pam!falkit"))
    return {"role": data.get("role", "Falkit"), "privileges": sorted(privs),
            "pveum": [pveum] if isinstance(pveum, str) else list(pveum)}


def _version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text or "")
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def helm_kubernetes_range(helm: tuple[int, int, int]) -> tuple[int, int] | None:
    """The Kubernetes minors (oldest, newest) a Helm release supports (see the module docstring)."""
    major, minor, _ = helm
    compiled = {3: minor + 15, 4: 34 + minor}.get(major)
    return None if compiled is None else (compiled - 3, compiled)


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# ---------------------------------------------------------------------------------------------- checks


def check_tools(spec: Any, env: dict[str, str] | None = None) -> list[Row]:
    """``talosctl`` and ``helm`` on PATH, with versions that fit ``spec.versions``."""
    env = dict(os.environ if env is None else env)
    path = env.get("PATH", "")
    rows = []
    want_talos = _version(spec.versions.talos)
    exe = shutil.which("talosctl", path=path)
    if exe is None:
        rows.append(Row("talosctl", "block", "talosctl is not on PATH",
                        f"install talosctl v{spec.versions.talos} (github.com/siderolabs/talos/releases) on PATH"))
    else:
        code, out = _run([exe, "version", "--client", "--short"], env)
        have = _version(out)
        if code != 0 or have is None:
            rows.append(Row("talosctl", "block", f"`talosctl version --client --short` failed ({code}): {out[:200]}",
                            f"install a working talosctl v{spec.versions.talos}"))
        elif want_talos and have[:2] != want_talos[:2]:
            rows.append(Row("talosctl", "block", f"{exe}: v{'.'.join(map(str, have))}, the spec's Talos is "
                            f"v{spec.versions.talos} (talosctl and Talos must share the minor)",
                            f"install talosctl v{spec.versions.talos}"))
        else:
            rows.append(Row("talosctl", "ok", f"{exe}: v{'.'.join(map(str, have))}"))
    exe = shutil.which("helm", path=path)
    kube = _version(spec.versions.kubernetes)
    if exe is None:
        rows.append(Row("helm", "block", "helm is not on PATH", "install Helm 3.19+ (helm.sh/docs/intro/install) on PATH"))
    else:
        code, out = _run([exe, "version", "--short"], env)
        have = _version(out)
        rng = helm_kubernetes_range(have) if have else None
        if code != 0 or have is None:
            rows.append(Row("helm", "block", f"`helm version --short` failed ({code}): {out[:200]}", "install a working Helm"))
        elif rng is None or (kube and not rng[0] <= kube[1] <= rng[1]):
            span = f"Kubernetes 1.{rng[0]}-1.{rng[1]}" if rng else "no Kubernetes version known to falkit"
            rows.append(Row("helm", "block", f"{exe}: v{'.'.join(map(str, have))} supports {span}; the spec's "
                            f"Kubernetes is {spec.versions.kubernetes}",
                            f"install a Helm compiled for Kubernetes 1.{kube[1] if kube else '?'} (Helm version skew policy)"))
        else:
            rows.append(Row("helm", "ok", f"{exe}: v{'.'.join(map(str, have))} (Kubernetes 1.{rng[0]}-1.{rng[1]})"))
    return rows


def check_privileges(pve: Any) -> Row:
    role = minimal_role()
    need = sorted(role["privileges"])
    try:
        perms = pve.access.permissions.get(path="/")
    except Exception as e:  # noqa: BLE001 - any failure is the row's detail
        return Row("privileges", "block", f"GET /access/permissions failed: {e}", "check the token (see the proxmox row)")
    have = {p for p, v in ((perms or {}).get("/") or {}).items() if v}
    missing = [p for p in need if p not in have]
    if missing:
        return Row("privileges", "block", f"the token lacks {len(missing)} of the {len(need)} privileges on /: "
                   + ", ".join(missing), " ; ".join(role["pveum"]))
    return Row("privileges", "ok", f"all {len(need)} privileges of role {role['role']} on /")


def _content(pve: Any, node: str, storage: str, content: str) -> list[str]:
    return [c.get("volid", "") for c in pve.nodes(node).storage(storage).content.get(content=content) or []]


def check_lxc_template(pve: Any, node: str, stores: dict[str, Any], volid: str) -> Row:
    """Plex's LXC template: on its storage (ok); else in Proxmox's appliance index, which
    60-truenas-plex downloads it from (``POST /nodes/{node}/aplinfo``, what ``pveam download`` calls:
    warn); else nothing can fetch it (block, with the ``pveam`` command). The same two reads as
    :func:`falkit.steps.truenas_plex._template_facts` (``GET .../content``, ``GET .../aplinfo``)."""
    storage, name = volid.split(":", 1)[0], volid.rsplit("/", 1)[-1]
    try:
        present = storage in stores and volid in _content(pve, node, storage, "vztmpl")
    except Exception:  # noqa: BLE001 - then the index decides
        present = False
    if present:
        return Row("lxc-template", "ok", volid)
    try:
        index = pve.nodes(node).aplinfo.get() or []
    except Exception as e:  # noqa: BLE001
        return Row("lxc-template", "block", f"{volid} is not on the node and the appliance index cannot be read "
                   f"(GET /nodes/{node}/aplinfo: {e})", f"pveam update && pveam download {storage} {name}")
    if any(a.get("template") == name for a in index):
        return Row("lxc-template", "warn", f"not on the node; 60-truenas-plex will download it: {name} is in the "
                   "appliance index")
    return Row("lxc-template", "block", f"{volid} is not on the node and not in Proxmox's appliance index "
               "(Plex's container needs it)", f"pveam update && pveam download {storage} {name}")


def check_plex_image(pve: Any, node: str, version: tuple[int, ...] | None, image: str) -> Row:
    """Plex's OCI image: Proxmox VE >= 9.1 (the release that added ``POST
    /nodes/{node}/storage/{storage}/oci-registry-pull``, pve-docs apidoc), then the archive
    60-truenas-plex pulls (:func:`falkit.steps.truenas_plex.oci_volid`, the same name) on ``local``."""
    if version is None or tuple(version[:2]) < (9, 1):
        have = ".".join(map(str, version[:2])) if version else "unknown"
        return Row("plex-image", "block", f"Plex's container is made from the OCI image {image}, which needs "
                   f"Proxmox VE 9.1 or later (oci-registry-pull); this node runs {have}",
                   "upgrade the node to Proxmox VE 9.1, or run 60-truenas-plex with plex_image=\"\" "
                   "(a Debian container; Plex installed by hand) and `falkit doctor --plex-image ''`")
    volid = oci_volid(image)
    try:
        present = volid in _content(pve, node, IMAGE_STORAGE, "vztmpl")
    except Exception:  # noqa: BLE001 - the pull then decides
        present = False
    if present:
        return Row("plex-image", "ok", volid)
    return Row("plex-image", "warn", f"{volid} is not on the node; 60-truenas-plex pulls {image} "
               "(oci-registry-pull; the node must reach the registry)")


def check_proxmox(target: Any, spec: Any, plex_template: str | None = None, plex_image: str | None = None) -> list[Row]:
    """Proxmox version, privileges, storages, the Talos ISO and Plex's image (or LXC template)."""
    pve, node = target.pve, target.node
    try:
        v = pve.version.get()
    except Exception as e:  # noqa: BLE001
        fix = ("`falkit twin up --params <spec>`" if target.kind == "twin" else
               "check secrets.proxmox_url, that the node answers on 8006, the token secret and the CA "
               f"({target.private_dir / 'pve-ca.pem'})")
        return [Row("proxmox", "block", f"GET /version failed: {type(e).__name__}: {e}", fix)]
    version = str((v or {}).get("version", "?"))
    major = _version(version + ".0.0")
    rows = [Row("proxmox", "ok" if major and major[0] >= 8 else "warn", f"Proxmox VE {version} on node {node}",
                "" if major and major[0] >= 8 else "falkit is tested with Proxmox VE 8 and 9")]
    rows.append(check_privileges(pve))
    try:
        stores = {s["storage"]: s for s in pve.nodes(node).storage.get() or []}
    except Exception as e:  # noqa: BLE001
        rows.append(Row("storages", "block", f"GET /nodes/{node}/storage failed: {e}", "grant Datastore.Audit"))
        return rows
    want = [s.name for s in spec.host.storages] + [ISO_STORAGE]
    missing = [n for n in dict.fromkeys(want) if n not in stores]
    inactive = [n for n in dict.fromkeys(want) if n in stores and not stores[n].get("active", 1)]
    if missing or inactive:
        rows.append(Row("storages", "block", "; ".join(x for x in (f"missing: {', '.join(missing)}" if missing else "",
                                                                 f"inactive: {', '.join(inactive)}" if inactive else "") if x),
                        "create them on the node (Datacenter > Storage, or `pvesm add`) or fix host.storages in the spec"))
    else:
        rows.append(Row("storages", "ok", ", ".join(dict.fromkeys(want))))
    if ISO_STORAGE in stores:
        isos = _content(pve, node, ISO_STORAGE, "iso")
        name = f"{ISO_STORAGE}:iso/{iso_name(spec)}"
        rows.append(Row("talos-iso", "ok", name) if name in isos else
                    Row("talos-iso", "warn", f"{name} is not on the node",
                        "none needed: 20-vms downloads it (download-url; the node must reach factory.talos.dev)"))
    plex = getattr(spec, "plex", None)
    if plex is not None and plex.enabled:
        image = DEFAULT_PLEX_IMAGE if plex_image is None else plex_image
        rows.append(check_plex_image(pve, node, major, image) if image else
                    check_lxc_template(pve, node, stores, plex_template or DEFAULT_TEMPLATE))
    return rows


def check_talos_secrets(target: Any, spec: Any) -> Row:
    """The rule 30-talos follows (:func:`falkit.steps.talos.import_secrets`): falkit's own
    ``talos-secrets.yaml``, else an existing cluster's ``secrets.yaml``, ``controlplane.yaml`` or
    ``terraform.tfstate`` in the private dir; without any, a cluster that exists blocks."""
    if target.read_private(SECRETS_FILE):
        return Row("talos-secrets", "ok", f"{target.private_dir / SECRETS_FILE}")
    try:
        bundle, name = import_secrets(target)
    except StepError as e:
        return Row("talos-secrets", "block", str(e), where_secrets_go(str(target.private_dir)))
    if bundle is not None:
        return Row("talos-secrets", "ok", f"{target.private_dir / name} (30-talos imports it)")
    prev = getattr(spec, "previous", None)
    exists = False
    if prev is not None:
        try:
            vmids = {int(v["vmid"]) for v in target.pve.nodes(target.node).qemu.get() or []}
        except Exception:  # noqa: BLE001 - the proxmox row already says why
            vmids = set()
        exists = any(n.vmid in vmids for n in prev.nodes)
    if not exists:
        return Row("talos-secrets", "ok", "no cluster exists yet: 30-talos generates the secrets")
    return Row("talos-secrets", "block",
               f"the cluster {spec.cluster.name} exists (VMs {', '.join(str(n.vmid) for n in prev.nodes)}) but none of "
               f"{', '.join((SECRETS_FILE, *IMPORT_FILES))} is in {target.private_dir}: falkit could not talk to its nodes",
               where_secrets_go(str(target.private_dir)))


def _git(root: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    try:
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env,
                           timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 124, str(e)
    return p.returncode, (p.stdout + p.stderr).strip()


def _local_remote(url: str, root: Path) -> Path | None:
    """The directory of a local remote (a path or a file:// URL), else None."""
    if url.startswith("file://"):
        return Path(urlsplit(url).path)
    if "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return None
    p = Path(url).expanduser()
    return p if p.is_absolute() else (root / p).resolve()


def check_gitops(target: Any, remote: str = "origin") -> Row:
    g = target.gitops
    if g is None:
        return Row("gitops-remote", "ok", "the spec has no gitops section")
    twin_checkout = (target.connection.get("gitops") or {}).get("checkout") if target.kind == "twin" else None
    root = Path(twin_checkout or g.checkout).expanduser()
    if _git(root, "rev-parse", "--git-dir")[0] != 0:
        return Row("gitops-remote", "block", f"{root} is not a git checkout",
                   f"clone your GitOps repository to {root} (spec gitops.checkout)")
    code, url = _git(root, "remote", "get-url", remote)
    if code != 0:
        status = "block" if g.push else "warn"
        return Row("gitops-remote", status, f"{root} has no remote {remote!r}; gitops.push is {str(g.push).lower()}",
                   f"git -C {root} remote add {remote} {g.repo_url}")
    safe_url = re.sub(r"//[^/@]*@", "//", url)  # never print credentials embedded in a URL
    code, out = _git(root, "ls-remote", "--heads", remote)
    if code != 0:
        return Row("gitops-remote", "block" if g.push else "warn", f"{remote} ({safe_url}) is not reachable: {out[-200:]}",
                   "check the URL and your credentials (a credential helper or ssh key)")
    local = _local_remote(url, root)
    if local is not None:
        writable = local.is_dir() and os.access(local, os.W_OK) and os.access(local / "objects", os.W_OK) \
            if (local / "objects").is_dir() else os.access(local / ".git" / "objects", os.W_OK)
        ok, why = writable, "its directory is not writable"
    else:
        code, out = _git(root, "push", "--dry-run", "--porcelain", remote, f"HEAD:refs/heads/{g.branch}")
        ok, why = code == 0, out[-200:]
    if not ok:
        return Row("gitops-remote", "block" if g.push else "warn", f"{remote} ({safe_url}) is not writable: {why}",
                   "give your credentials write access to the repository")
    return Row("gitops-remote", "ok", f"{remote} ({safe_url}) reachable and writable")


def check_addresses(target: Any, spec: Any) -> Row:
    """How the new Talos VMs reach their planned address in maintenance mode (ISO boot)."""
    pve, node = target.pve, target.node
    vms = [v for v in design_of(spec).vms if v.role in ("control-plane", "worker")]
    try:
        existing = {int(v["vmid"]) for v in pve.nodes(node).qemu.get() or []}
    except Exception:  # noqa: BLE001
        existing = set()
    static, dhcp = [], []
    for vm in vms:
        nic = vm.nics[0] if vm.nics else None
        cfg = {}
        if vm.vmid in existing:
            try:
                cfg = pve.nodes(node).qemu(vm.vmid).config.get() or {}
            except Exception:  # noqa: BLE001
                cfg = {}
        if any(str(k).startswith("ipconfig") for k in cfg):
            static.append(vm.name)
        elif nic is not None:
            dhcp.append(f"{nic.mac} -> {nic.ip} ({vm.name})")
    if not dhcp:
        return Row("addresses", "ok", f"static at first boot (cloud-init ipconfig): {', '.join(static)}")
    gw = spec.networks.management.gateway
    return Row("addresses", "warn", "the Talos ISO boots with DHCP; each node answers at its planned IP only with a "
               "reservation: " + "; ".join(dhcp),
               f"reserve these MAC -> IP pairs on the DHCP server of {spec.networks.management.cidr} (gateway {gw}) "
               "before 30-talos")


# ---------------------------------------------------------------------------------------------- report


def doctor(spec: Any, target: str = "twin", state_dir: str | os.PathLike | None = None,
           env: dict[str, str] | None = None, plex_template: str | None = None,
           plex_image: str | None = None) -> list[Row]:
    """All rows for ``spec`` on ``target`` (read-only; a twin is never started). The privileges are
    a row here, so the connection does not refuse a token that lacks one. ``plex_template``: the
    60-truenas-plex option of that name (default :data:`falkit.steps.truenas_plex.DEFAULT_TEMPLATE`),
    used when ``plex_image`` (that option, default ``DEFAULT_PLEX_IMAGE``) is ``""``.
    The tools are the ones the run uses: on the twin its stand-ins, first on PATH
    (:meth:`falkit.clients.target.Target.tool_env`)."""
    lab_spec = _load_spec(spec)
    try:
        t = connect(spec, target, state_dir, start_twin=False, check_privileges=False)
    except FalkitError as e:
        fix = ("start it: `falkit twin up --params <spec>`" if target == "twin"
               else "set secrets.proxmox_url and the token secret (secrets.proxmox_token)")
        return [Row("proxmox", "block", str(e), fix), *check_tools(lab_spec, env)]
    try:
        rows = check_proxmox(t, lab_spec, plex_template, plex_image)
        if rows[0].status != "block":
            rows.append(check_talos_secrets(t, lab_spec))
            rows.append(check_addresses(t, lab_spec))
        rows += check_tools(lab_spec, t.tool_env() if env is None else env)
        rows.append(check_gitops(t))
        return rows
    finally:
        t.close()


def _load_spec(spec: Any) -> Any:
    return spec if isinstance(spec, LabSpec) else load_spec(spec)


def render(rows: list[Row]) -> str:
    w = {k: max(len(k), *(len(getattr(r, k)) for r in rows)) for k in ("check", "status")}
    lines = [f"{'check'.ljust(w['check'])}  {'status'.ljust(w['status'])}  detail / fix"]
    for r in rows:
        lines.append(f"{r.check.ljust(w['check'])}  {r.status.ljust(w['status'])}  {r.detail}")
        if r.fix:
            lines.append(f"{''.ljust(w['check'])}  {''.ljust(w['status'])}  fix: {r.fix}")
    return "\n".join(lines)


def main_doctor(args: Any) -> int:
    """The CLI: print the rows (or JSON with ``--json``); exit 1 when a row blocks."""
    rows = doctor(args.params, args.target, plex_image=getattr(args, "plex_image", None))
    blocked = [r for r in rows if r.status == "block"]
    if getattr(args, "json", False):
        print(json.dumps({"target": args.target, "ready": not blocked, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(f"falkit doctor: {args.target} ({args.params})\n")
        print(render(rows))
        print(f"\n{'NOT READY' if blocked else 'ready'}: {len(blocked)} blocking, "
              f"{sum(r.status == 'warn' for r in rows)} warning(s)")
    return 1 if blocked else 0
