"""CustomResourceDefinitions: turning CRD objects into served types, and loading CRDs.

``apiextensions.k8s.io/v1`` CRDs: each version with ``served: true`` becomes a
:class:`~falkit.twin.kube.builtin.ResourceType` (with ``status``/``scale`` subresources when
declared) and gets a :class:`~falkit.twin.kube.validation.CRSchema`. Unserved versions are not
routed (404). The CRD's status is set to Established/NamesAccepted at once.

``load_crd_file`` reads a YAML CRD (e.g. ``falkit/data/upstream/cilium/.../*.yaml``);
``diskpool_crd`` builds the Mayastor DiskPool CRD from the derived JSON Schemas in
``falkit/data/upstream/mayastor/`` (Mayastor generates its CRD at runtime; no YAML is published).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .builtin import ResourceType
from .errors import cause
from .validation import CRSchema

UPSTREAM = Path(__file__).resolve().parents[2] / "data" / "upstream"


def load_crd_file(path: str | Path) -> dict:
    """The first ``CustomResourceDefinition`` document in a YAML file."""
    for doc in yaml.safe_load_all(Path(path).read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            return doc
    raise ValueError(f"{path}: no CustomResourceDefinition document")


def validate_crd(crd: dict) -> list[dict]:
    """Structural checks the apiextensions apiserver makes on a CRD (subset)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for f in ("group", "scope"):
        if not spec.get(f):
            out.append(cause(f"spec.{f}", "Required value", "FieldValueRequired"))
    for f in ("plural", "kind"):
        if not names.get(f):
            out.append(cause(f"spec.names.{f}", "Required value", "FieldValueRequired"))
    if spec.get("scope") not in (None, "Namespaced", "Cluster"):
        out.append(cause("spec.scope", f'Unsupported value: "{spec.get("scope")}"', "FieldValueNotSupported"))
    versions = spec.get("versions") or []
    if not versions:
        out.append(cause("spec.versions", "Required value", "FieldValueRequired"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(cause("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    name = (crd.get("metadata") or {}).get("name")
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        out.append(cause("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    return out


def served_types(crd: dict) -> list[tuple[ResourceType, CRSchema]]:
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = tuple(s for s in ("status", "scale") if s in (v.get("subresources") or {}))
        rt = ResourceType(
            group=spec["group"], version=v["name"], kind=names["kind"], plural=names["plural"],
            namespaced=spec.get("scope") == "Namespaced", short_names=tuple(names.get("shortNames") or ()),
            subresources=subs, categories=tuple(names.get("categories") or ()), crd=crd["metadata"]["name"],
            printer_columns=tuple(v.get("additionalPrinterColumns") or ()))
        out.append((rt, CRSchema((v.get("schema") or {}).get("openAPIV3Schema"))))
    return out


def crd_status(crd: dict, when: str) -> dict:
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    old = (crd.get("status") or {}).get("storedVersions") or []
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": when},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": when},
        ],
        "storedVersions": list(dict.fromkeys(old + storage)),
    }


# --- Mayastor DiskPool from derived draft-2020 JSON Schemas ------------------------------------

def _to_openapi(s):
    """Adapt draft 2020-12 keywords to a structural openAPIV3Schema."""
    if isinstance(s, list):
        return [_to_openapi(x) for x in s]
    if not isinstance(s, dict):
        return s
    out: dict = {}
    for k, v in s.items():
        if k.startswith("$") or k in ("title", "x-provenance", "x-kubernetes"):
            continue
        if k == "const":
            out["enum"] = [v]
        elif k == "type" and isinstance(v, list):
            kinds = [t for t in v if t != "null"]
            out["type"] = kinds[0]
            if "null" in v:
                out["nullable"] = True
        elif k == "additionalProperties" and v is False:
            continue  # structural schemas: pruning / fieldValidation=Strict do this job
        elif k in ("properties",):
            out[k] = {pk: _to_openapi(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = _to_openapi(v)
        else:
            out[k] = v
    return out


def diskpool_crd(versions=("v1beta2",), storage: str | None = None) -> dict:
    """A ``diskpools.openebs.io`` CRD serving ``versions`` (``v1beta2`` and/or ``v1beta3``)."""
    vers = []
    x = {}
    for name in versions:
        raw = json.loads((UPSTREAM / "mayastor" / f"diskpool.{name}.derived.schema.json").read_text())
        x = raw["x-kubernetes"]
        schema = _to_openapi(raw)
        schema["properties"]["metadata"] = {"type": "object"}
        schema["properties"]["apiVersion"] = {"type": "string"}
        schema["properties"]["kind"] = {"type": "string"}
        schema["required"] = [r for r in schema.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
        cols = []
        for c in x.get("printerColumns") or []:
            col, _, path = c.partition("=")
            # column types as the operator's ``printcolumn``s declare them (openebs/mayastor-control-
            # plane k8s/operators/src/pool/diskpool/crd/v1beta3.rs, commit fc7e2b193fc8898861e7da6086cb37ecc258afa1):
            # byte counts are integers, the ``*_q`` quantities strings, ``encrypted`` a boolean
            typ = "string"
            if col in ("capacity", "used", "available") and not path.endswith("_q"):
                typ = "integer"
            elif col == "encrypted":
                typ = "boolean"
            cols.append({"name": col, "jsonPath": path, "type": typ})
        vers.append({"name": name, "served": True, "storage": name == (storage or versions[-1]),
                     "schema": {"openAPIV3Schema": schema}, "subresources": x.get("subresources") or {},
                     "additionalPrinterColumns": cols})
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{x['plural']}.{x['group']}"},
        "spec": {"group": x["group"], "scope": x["scope"],
                 "names": {"kind": x["kind"], "plural": x["plural"], "singular": x["kind"].lower(),
                           "listKind": x["kind"] + "List", "shortNames": x.get("shortNames") or []},
                 "versions": vers},
    }
