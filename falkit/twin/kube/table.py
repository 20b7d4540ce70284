"""Server-side printing: ``meta.k8s.io/v1 Table`` for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``; each row carries its
cells and (``includeObject=Metadata``, the default) a ``PartialObjectMetadata`` so kubectl can show
the NAMESPACE column.

Built-in kinds: the columns and cells of the apiserver's printers, written after
kubernetes/kubernetes ``pkg/printers/internalversion/printers.go``. ``fetch github:kubernetes/kubernetes``
was refused here (a 1.9 GB snapshot, over the 500 MB limit), so the file was read from the session's
code index: its ``kubernetes/kubernetes`` entry is an old revision (commit
51652d1c232daef8dc697a4fd9e63cad7c51faad, before Internal-IP, Nominated Node, VolumeAttributesClass),
and the revision followed here is the index's v1.32-era copy of the same path (it imports
``resource/v1beta1`` and ``coordination/v1alpha2``; pod columns with "Nominated Node"/"Readiness
Gates", node "Internal-IP", PV/PVC "VolumeAttributesClass", job "Status"/"Completions"/"Duration"),
whose commit the index does not give. The apiserver generates every column, wide ones included (``pkg/printers/storage``:
``GenerateOptions{Wide: true}``); kubectl hides ``priority: 1`` columns unless ``-o wide``. Ages are
``k8s.io/apimachinery/pkg/util/duration.HumanDuration`` of ``now - creationTimestamp``
(``staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go``, commit
008b3652959ca58af8be3fb5b6ecfe9ae7638282).

Custom resources: the apiextensions-apiserver's table convertor
(``staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor/
tableconvertor.go``, commit 045bbb192caa3d04b3aaa5b20fd9989ce11996fa): Name, then exactly the
version's ``additionalPrinterColumns`` (an apiserver adds no Age of its own; a CRD without columns
gets the default ``Age`` = ``.metadata.creationTimestamp`` of type ``date``); a ``date`` cell is an
age, a missing value is ``null``, ``string`` cells are the JSONPath result printed, ``integer`` /
``number`` / ``boolean`` cells the typed value. JSONPath here covers what CRDs use: ``.a.b``,
``[n]``, ``[*]`` and filters ``[?(@.k=="v")]``.

Kinds without a printer get the apiserver's default convertor: Name and "Created At" (RFC 3339).
"""

from __future__ import annotations

import datetime as _dt
import json
import re

from .builtin import ResourceType

_NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some "
              "resources may allow a client to request the generation of an appropriate name automatically. "
              "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
              "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
             "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
             "not set this value. It is represented in RFC3339 form and is in UTC.")


# --- time ----------------------------------------------------------------------------------------

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _parse_ts(ts) -> _dt.datetime | None:
    m = _TS.match(ts) if isinstance(ts, str) else None
    if m is None:
        return None
    tz = _dt.UTC if m.group(2) == "Z" else _dt.datetime.strptime(m.group(2).replace(":", ""), "%z").tzinfo
    return _dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=tz)


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _since(ts) -> str:
    """``translateTimestampSince``: ``<unknown>`` for a zero time."""
    then = _parse_ts(ts)
    if then is None:
        return "<unknown>"
    return human_duration((_dt.datetime.now(_dt.UTC) - then).total_seconds())


# --- helpers after printers.go -----------------------------------------------------------------

def _format_labels(m: dict | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, ``<none>`` when empty."""
    if not m:
        return "<none>"
    return ",".join(f"{k}={m[k]}" for k in sorted(m))


def _format_selector(sel: dict | None) -> str:
    """``metav1.FormatLabelSelector``."""
    if sel is None:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), sorted(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    s = ",".join(parts)
    return s or "<none>"


def _containers(containers: list | None) -> tuple[str, str]:
    """``layoutContainerCells``."""
    cs = containers or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _access_modes(modes: list | None) -> str:
    """``helper.GetAccessModesAsString``: RWO, ROX, RWX, RWOP in that order."""
    modes = modes or []
    short = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
             ("ReadWriteOncePod", "RWOP")]
    return ",".join(s for m, s in short if m in modes)


def _g(o: dict, *path, default=None):
    cur = o
    for p in path:
        if not isinstance(cur, dict):
            return default
        cur = cur.get(p)
    return default if cur is None else cur


def _tmpl_containers(o):
    return _g(o, "spec", "template", "spec", "containers", default=[])


# --- printers ----------------------------------------------------------------------------------

def _is_restartable_init(c: dict | None) -> bool:
    return bool(c) and c.get("restartPolicy") == "Always"


def _pod(o: dict) -> list:
    """``printPod``."""
    spec, st, md = o.get("spec") or {}, o.get("status") or {}, o.get("metadata") or {}
    restarts = restartable_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart = last_restartable = None
    phase = st.get("phase", "")
    reason = st.get("reason") or phase
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    inits = {c.get("name"): c for c in spec.get("initContainers") or []}
    total += sum(1 for c in inits.values() if _is_restartable_init(c))

    def later(a, b):
        return b if (b is not None and (a is None or b > a)) else a

    initializing = False
    for i, c in enumerate(st.get("initContainerStatuses") or []):
        restarts += int(c.get("restartCount") or 0)
        term_last = _parse_ts(_g(c, "lastState", "terminated", "finishedAt"))
        last_restart = later(last_restart, term_last)
        restartable = _is_restartable_init(inits.get(c.get("name")))
        if restartable:
            restartable_restarts += int(c.get("restartCount") or 0)
            last_restartable = later(last_restartable, term_last)
        state = c.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if restartable and c.get("started"):
            if c.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                reason = (f"Init:Signal:{term['signal']}" if term.get("signal")
                          else f"Init:ExitCode:{int(term.get('exitCode') or 0)}")
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in st.get("conditions") or [])
    if not initializing or initialized:
        restarts, last_restart = restartable_restarts, last_restartable
        has_running = False
        for c in reversed(st.get("containerStatuses") or []):
            restarts += int(c.get("restartCount") or 0)
            last_restart = later(last_restart, _parse_ts(_g(c, "lastState", "terminated", "finishedAt")))
            state = c.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = (f"Signal:{term['signal']}" if term.get("signal")
                          else f"ExitCode:{int(term.get('exitCode') or 0)}")
            elif c.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"

    if md.get("deletionTimestamp") and st.get("reason") == "NodeLost":
        reason = "Unknown"
    elif md.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts and last_restart is not None:
        restarts_str = (f"{restarts} ("
                        f"{human_duration((_dt.datetime.now(_dt.UTC) - last_restart).total_seconds())} ago)")
    ips = st.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_str = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        gates_str = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    return [md.get("name"), f"{ready}/{total}", reason, restarts_str, _since(md.get("creationTimestamp")),
            pod_ip, spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>", gates_str]


def _pod_conditions(o: dict) -> list | None:
    phase = (o.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


def _node(o: dict) -> list:
    """``printNode``: Ready/NotReady (Unknown without the condition), roles from
    ``node-role.kubernetes.io/<role>`` and ``kubernetes.io/role``; wide: first InternalIP/ExternalIP."""
    md, st = o.get("metadata") or {}, o.get("status") or {}
    status = []
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready":
            status = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if _g(o, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for k, v in (md.get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/"):]:
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = st.get("nodeInfo") or {}

    def addr(t):
        return next((a.get("address") for a in st.get("addresses") or [] if a.get("type") == t), "<none>")
    return [md.get("name"), ",".join(status), ",".join(sorted(roles)) or "<none>", _since(md.get("creationTimestamp")),
            info.get("kubeletVersion", ""), addr("InternalIP"), addr("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _svc_external_ip(spec: dict, st: dict) -> str:
    """``getServiceExternalIP`` (wide form: the apiserver prints with Wide=true, no clipping)."""
    ext = spec.get("externalIPs") or []
    t = spec.get("type")
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if t == "LoadBalancer":
        lb = sorted({i.get("ip") or i.get("hostname") for i in _g(st, "loadBalancer", "ingress", default=[])
                     if i.get("ip") or i.get("hostname")})
        if ext:
            return ",".join(lb + ext)
        return ",".join(lb) if lb else "<pending>"
    if t == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _svc(o: dict) -> list:
    """``printService``."""
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP")
        ports.append(f"{p.get('port')}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return [md.get("name"), spec.get("type", ""), ips[0] if ips else "<none>", _svc_external_ip(spec, st),
            ",".join(ports) or "<none>", _since(md.get("creationTimestamp")), _format_labels(spec.get("selector"))]


def _deploy(o: dict) -> list:
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_tmpl_containers(o))
    return [md.get("name"), f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas') or 0)}",
            int(st.get("updatedReplicas") or 0), int(st.get("availableReplicas") or 0),
            _since(md.get("creationTimestamp")), names, images, _format_selector(spec.get("selector"))]


def _ds(o: dict) -> list:
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_tmpl_containers(o))
    return [md.get("name"), int(st.get("desiredNumberScheduled") or 0), int(st.get("currentNumberScheduled") or 0),
            int(st.get("numberReady") or 0), int(st.get("updatedNumberScheduled") or 0),
            int(st.get("numberAvailable") or 0), _format_labels(_g(o, "spec", "template", "spec", "nodeSelector")),
            _since(md.get("creationTimestamp")), names, images, _format_selector(spec.get("selector"))]


def _rs(o: dict) -> list:
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_tmpl_containers(o))
    return [md.get("name"), int(spec.get("replicas") or 0), int(st.get("replicas") or 0),
            int(st.get("readyReplicas") or 0), _since(md.get("creationTimestamp")), names, images,
            _format_selector(spec.get("selector"))]


def _sts(o: dict) -> list:
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_tmpl_containers(o))
    return [md.get("name"), f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas') or 0)}",
            _since(md.get("creationTimestamp")), names, images]


def _job(o: dict) -> list:
    """``printJob``: Status from conditions, Completions ``succeeded/completions``, Duration."""
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    succeeded = int(st.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    else:
        par = int(spec.get("parallelism") or 0)
        completions = f"{succeeded}/1 of {par}" if par > 1 else f"{succeeded}/1"
    start, done = _parse_ts(st.get("startTime")), _parse_ts(st.get("completionTime"))
    if start is None:
        dur = ""
    else:
        end = done or _dt.datetime.now(_dt.UTC)
        dur = human_duration((end - start).total_seconds())
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    if conds.get("Complete") == "True":
        status = "Complete"
    elif conds.get("Failed") == "True":
        status = "Failed"
    elif md.get("deletionTimestamp"):
        status = "Terminating"
    elif conds.get("Suspended") == "True":
        status = "Suspended"
    elif conds.get("FailureTarget") == "True":
        status = "FailureTarget"
    else:
        status = "Running"
    names, images = _containers(_tmpl_containers(o))
    return [md.get("name"), status, completions, dur, _since(md.get("creationTimestamp")), names, images,
            _format_selector(spec.get("selector"))]


def _pv_class(o: dict) -> str:
    return (_g(o, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
            or _g(o, "spec", "storageClassName", default=""))


def _pv(o: dict) -> list:
    """``printPersistentVolume``."""
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if md.get("deletionTimestamp") else st.get("phase", "")
    return [md.get("name"), _g(spec, "capacity", "storage", default="0"), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), phase, claim, _pv_class(o),
            spec.get("volumeAttributesClassName") or "<unset>", st.get("reason", ""),
            _since(md.get("creationTimestamp")), spec.get("volumeMode") or "<unset>"]


def _pvc(o: dict) -> list:
    """``printPersistentVolumeClaim``: capacity and access modes only once bound to a volume."""
    md, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    phase = "Terminating" if md.get("deletionTimestamp") else st.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(st.get("accessModes"))
        capacity = _g(st, "capacity", "storage", default="0")
    return [md.get("name"), phase, spec.get("volumeName", ""), capacity, modes, _pv_class(o),
            spec.get("volumeAttributesClassName") or "<unset>", _since(md.get("creationTimestamp")),
            spec.get("volumeMode") or "<unset>"]


def _sc(o: dict) -> list:
    """``printStorageClass``: `` (default)`` after the name of the default class; reclaimPolicy
    Delete and volumeBindingMode Immediate when unset; allowVolumeExpansion false when unset."""
    md = o.get("metadata") or {}
    name = md.get("name")
    ann = md.get("annotations") or {}
    if "true" in (ann.get("storageclass.kubernetes.io/is-default-class"),
                  ann.get("storageclass.beta.kubernetes.io/is-default-class")):
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy") or "Delete",
            o.get("volumeBindingMode") or "Immediate", bool(o.get("allowVolumeExpansion") or False),
            _since(md.get("creationTimestamp"))]


def _endpoints(o: dict) -> list:
    """``printEndpoints`` / ``formatEndpoints``: up to 3 ``ip:port``, then `` + N more...``."""
    md = o.get("metadata") or {}
    eps = []
    for ss in o.get("subsets") or []:
        ports = ss.get("ports") or []
        for a in ss.get("addresses") or []:
            if not ports:
                eps.append(a.get("ip", ""))
            for p in ports:
                eps.append(f"{a.get('ip', '')}:{p.get('port')}")
    s = ",".join(eps[:3]) + (f" + {len(eps) - 3} more..." if len(eps) > 3 else "")
    return [md.get("name"), s or "<none>", _since(md.get("creationTimestamp"))]


def _event(o: dict) -> list:
    """``printEvent`` (the apiserver's wide form): last seen, type, reason, object, subobject, source,
    message, first seen, count, name. Times fall back as printers.go does: first seen from
    ``eventTime`` when ``firstTimestamp`` is unset, last seen from first seen, ``series`` when set."""
    md, inv = o.get("metadata") or {}, o.get("involvedObject") or {}
    first = _since(o["firstTimestamp"]) if o.get("firstTimestamp") else _since(o.get("eventTime"))
    last = _since(o["lastTimestamp"]) if o.get("lastTimestamp") else first
    count = int(o.get("count") or 0)
    if o.get("series"):
        last = _since(o["series"].get("lastObservedTime"))
        count = int(o["series"].get("count") or 0)
    elif count == 0:
        count = 1
    kind = (inv.get("kind") or "").lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    src = o.get("source") or {}
    component = src.get("component") or o.get("reportingComponent") or ""
    instance = src.get("host") or o.get("reportingInstance") or ""
    source = component + (f", {instance}" if component and instance else "")
    return [last, o.get("type", ""), o.get("reason", ""), target, inv.get("fieldPath", ""), source,
            (o.get("message") or "").strip(), first, count, md.get("name")]


def _simple(*cells):
    def fn(o):
        md = o.get("metadata") or {}
        return [md.get("name")] + [c(o) for c in cells] + [_since(md.get("creationTimestamp"))]
    return fn


def _col(name, typ="string", priority=0, desc=""):
    d = {"name": name, "type": typ, "format": "", "description": desc or name, "priority": priority}
    if name == "Name":
        d.update(format="name", description=_NAME_DESC)
    if name == "Age" and not desc:
        d["description"] = _AGE_DESC
    return d


_S, _I = "string", "integer"
PRINTERS: dict[str, tuple[list[dict], object]] = {
    "Pod": ([_col("Name"), _col("Ready"), _col("Status"), _col("Restarts"), _col("Age"), _col("IP", priority=1),
             _col("Node", priority=1), _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod),
    "Node": ([_col("Name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
              _col("Internal-IP", priority=1), _col("External-IP", priority=1), _col("OS-Image", priority=1),
              _col("Kernel-Version", priority=1), _col("Container-Runtime", priority=1)], _node),
    "Service": ([_col("Name"), _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _col("Age"),
                 _col("Selector", priority=1)], _svc),
    "Deployment": ([_col("Name"), _col("Ready"), _col("Up-to-date"), _col("Available"), _col("Age"),
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _deploy),
    "DaemonSet": ([_col("Name"), _col("Desired", _I), _col("Current", _I), _col("Ready", _I), _col("Up-to-date", _I),
                   _col("Available", _I), _col("Node Selector"), _col("Age"), _col("Containers", priority=1),
                   _col("Images", priority=1), _col("Selector", priority=1)], _ds),
    "ReplicaSet": ([_col("Name"), _col("Desired", _I), _col("Current", _I), _col("Ready", _I), _col("Age"),
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _rs),
    "StatefulSet": ([_col("Name"), _col("Ready"), _col("Age"), _col("Containers", priority=1),
                     _col("Images", priority=1)], _sts),
    "Job": ([_col("Name"), _col("Status"), _col("Completions"), _col("Duration"), _col("Age"),
             _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _job),
    "PersistentVolume": ([_col("Name"), _col("Capacity"), _col("Access Modes"), _col("Reclaim Policy"),
                          _col("Status"), _col("Claim"), _col("StorageClass"), _col("VolumeAttributesClass"),
                          _col("Reason"), _col("Age"), _col("VolumeMode", priority=1)], _pv),
    "PersistentVolumeClaim": ([_col("Name"), _col("Status"), _col("Volume"), _col("Capacity"), _col("Access Modes"),
                               _col("StorageClass"), _col("VolumeAttributesClass"), _col("Age"),
                               _col("VolumeMode", priority=1)], _pvc),
    "StorageClass": ([_col("Name"), _col("Provisioner"), _col("ReclaimPolicy"), _col("VolumeBindingMode"),
                      _col("AllowVolumeExpansion"), _col("Age")], _sc),
    "Namespace": ([_col("Name"), _col("Status"), _col("Age")],
                  _simple(lambda o: _g(o, "status", "phase", default=""))),
    "ConfigMap": ([_col("Name"), _col("Data", _I), _col("Age")],
                  _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))),
    "Secret": ([_col("Name"), _col("Type"), _col("Data", _I), _col("Age")],
               _simple(lambda o: o.get("type", ""), lambda o: len(o.get("data") or {}))),
    "ServiceAccount": ([_col("Name"), _col("Secrets", _I), _col("Age")],
                       _simple(lambda o: len(o.get("secrets") or []))),
    "Endpoints": ([_col("Name"), _col("Endpoints"), _col("Age")], _endpoints),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Subobject", priority=1),
               _col("Source", priority=1), _col("Message"), _col("First Seen", priority=1),
               _col("Count", priority=1), {**_col("Name"), "priority": 1}], _event),
    "Lease": ([_col("Name"), _col("Holder"), _col("Age")], _simple(lambda o: _g(o, "spec", "holderIdentity", default=""))),
}


# --- JSONPath for additionalPrinterColumns -----------------------------------------------------

_TOKEN = re.compile(r"""\.\.?([A-Za-z0-9_\-/]+)|\[\s*\?\(\s*@\.([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([^)\s]+))\s*\)\s*\]|\[\s*(\*|-?\d+)\s*\]|\.\s*\*|\[\s*['"]([^'"]+)['"]\s*\]""")


def jsonpath_find(obj, path: str) -> list:
    """Every value ``path`` (a CRD column's ``jsonPath``, without braces) selects in ``obj``."""
    cur = [obj]
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1]
    pos = 0
    while pos < len(p):
        m = _TOKEN.match(p, pos)
        if not m:
            return []
        pos = m.end()
        nxt = []
        if m.group(1) is not None or m.group(8) is not None:
            key = m.group(1) if m.group(1) is not None else m.group(8)
            nxt = [c[key] for c in cur if isinstance(c, dict) and key in c]
        elif m.group(2) is not None:
            field, op = m.group(2), m.group(3)
            want = next(g for g in (m.group(4), m.group(5), m.group(6)) if g is not None)
            for c in cur:
                for item in (c if isinstance(c, list) else []):
                    v = item
                    for seg in field.split("."):
                        v = v.get(seg) if isinstance(v, dict) else None
                    sv = ("true" if v else "false") if isinstance(v, bool) else (None if v is None else str(v))
                    if (sv == want) == (op == "=="):
                        nxt.append(item)
        elif m.group(7) is not None:
            if m.group(7) == "*":
                for c in cur:
                    nxt.extend(c if isinstance(c, list) else (c.values() if isinstance(c, dict) else []))
            else:
                i = int(m.group(7))
                nxt = [c[i] for c in cur if isinstance(c, list) and -len(c) <= i < len(c)]
        else:  # .*
            for c in cur:
                nxt.extend(c.values() if isinstance(c, dict) else (c if isinstance(c, list) else []))
        cur = nxt
    return cur


def _jsonpath_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _crd_cell(typ: str, path: str, obj: dict):
    """``tableconvertor.ConvertToTable`` / ``cellForJSONValue`` for one column."""
    results = jsonpath_find(obj, path)
    if not results:
        return None
    value = results[0]
    if typ == "string":
        return _jsonpath_text(value)
    if value is None:
        return None
    if typ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if typ == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ == "boolean" and isinstance(value, bool):
        return value
    if typ == "date" and isinstance(value, str):
        return "<invalid>" if _parse_ts(value) is None else _since(value)
    return None


DEFAULT_CRD_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                        "description": _AGE_DESC},)


def columns_for(rt: ResourceType) -> tuple[list[dict], object]:
    """Column definitions and a row function ``obj -> cells`` for a served type."""
    if rt.crd:
        crd_cols = list(rt.printer_columns) or list(DEFAULT_CRD_COLUMNS)
        cols = [_col("Name")]
        for c in crd_cols:
            cols.append({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description") or
                         f"Custom resource definition column (in JSONPath format): {c.get('jsonPath', '')}",
                         "priority": int(c.get("priority") or 0)})

        def crd_row(o):
            return [(o.get("metadata") or {}).get("name")] + [
                _crd_cell(c.get("type", "string"), c.get("jsonPath", ""), o) for c in crd_cols]
        return cols, crd_row
    if rt.kind in PRINTERS:
        return PRINTERS[rt.kind]
    # the apiserver's default table convertor (k8s.io/apiserver/pkg/registry/rest/table.go)
    cols = [_col("Name"), {"name": "Created At", "type": "date", "format": "", "description": _AGE_DESC,
                           "priority": 0}]

    def default_row(o):
        md = o.get("metadata") or {}
        return [md.get("name"), md.get("creationTimestamp")]
    return cols, default_row


def to_table(rt: ResourceType, objs: list[dict], list_meta: dict, include_object: str = "Metadata") -> dict:
    cols, row_fn = columns_for(rt)
    rows = []
    for o in objs:
        md = o.get("metadata") or {}
        row: dict = {"cells": row_fn(o)}
        if rt.kind == "Pod" and not rt.crd:
            conds = _pod_conditions(o)
            if conds:
                row["conditions"] = conds
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": cols, "rows": rows}
