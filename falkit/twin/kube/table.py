"""Server-side printing: ``meta.k8s.io/v1 Table`` for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``; each row carries its
cells and (``includeObject=Metadata``, the default) a ``PartialObjectMetadata`` so kubectl can show
the NAMESPACE column. Columns follow the apiserver's printers for common kinds, CRDs'
``additionalPrinterColumns`` for custom resources, and Name/Age otherwise.
"""

from __future__ import annotations

import datetime as _dt

from .builtin import ResourceType


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    except ValueError:
        return "<unknown>"
    s = int((_dt.datetime.now(_dt.UTC) - then).total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n * 2 or (unit == "m" and s >= 60):
            return f"{s // n}{unit}"
    return f"{max(s, 0)}s"


def _jsonpath(obj: dict, path: str):
    cur = obj
    for seg in path.strip().lstrip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(seg)
    return cur


def _pod(o):
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    n = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    return [f"{ready}/{n}", st.get("phase", ""), restarts]


def _node(o):
    conds = {c.get("type"): c.get("status") for c in (o.get("status") or {}).get("conditions") or []}
    status = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = ",".join(sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")))
    return [status, roles or "<none>", ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]


def _svc(o):
    spec = o.get("spec") or {}
    ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ext = ",".join(i.get("ip") or i.get("hostname") or "" for i in ing) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    ports = ",".join(f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports") or []) or "<none>"
    return [spec.get("type", ""), spec.get("clusterIP", ""), ext, ports]


def _deploy(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0)]


def _pvc(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [st.get("phase", ""), spec.get("volumeName", ""), (st.get("capacity") or {}).get("storage", ""),
            spec.get("storageClassName", "")]


_S = "string"
PRINTERS = {
    "Pod": ([("Ready", _S), ("Status", _S), ("Restarts", "integer")], _pod),
    "Node": ([("Status", _S), ("Roles", _S), ("Version", _S)], _node),
    "Service": ([("Type", _S), ("Cluster-IP", _S), ("External-IP", _S), ("Port(s)", _S)], _svc),
    "Deployment": ([("Ready", _S), ("Up-to-date", "integer"), ("Available", "integer")], _deploy),
    "PersistentVolumeClaim": ([("Status", _S), ("Volume", _S), ("Capacity", _S), ("StorageClass", _S)], _pvc),
    "Namespace": ([("Status", _S)], lambda o: [(o.get("status") or {}).get("phase", "")]),
}


def to_table(rt: ResourceType, objs: list[dict], list_meta: dict, include_object: str = "Metadata") -> dict:
    cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    extra_cols, fn = PRINTERS.get(rt.kind, ([], None))
    crd_cols = [c for c in rt.printer_columns] if rt.printer_columns else []
    cols += [{"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t in extra_cols]
    cols += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
              "description": c.get("description", ""), "priority": c.get("priority", 0)} for c in crd_cols]
    cols.append({"name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0})
    rows = []
    for o in objs:
        md = o.get("metadata") or {}
        cells = [md.get("name")]
        if fn:
            cells += fn(o)
        for c in crd_cols:
            v = _jsonpath(o, c.get("jsonPath", ""))
            cells.append("" if v is None else v)
        cells.append(_age(md.get("creationTimestamp")))
        if include_object == "Object":
            ref = o
        elif include_object == "None":
            ref = None
        else:
            ref = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md}
        row = {"cells": cells}
        if ref is not None:
            row["object"] = ref
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": cols, "rows": rows}
