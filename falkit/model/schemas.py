"""Upstream schemas shipped in ``falkit/data/upstream`` (byte-for-byte copies; see its
PROVENANCE.md) and validators over them. Used on both sides: falkit validates what it generates
before applying it, and the twin enforces the same schemas as the real components would.

- Talos machine config: one JSON Schema per minor version (draft 2020-12); the top level is a
  ``oneOf`` over document kinds, so each YAML document is validated on its own against the
  definition of its kind (``version: v1alpha1`` -> ``v1alpha1.Config``; ``kind: LinkConfig`` ->
  the definition whose ``kind`` is that).
- Cilium Helm values: ``values.schema.json`` per minor (draft-07; types only, a misspelt key passes).
- CRDs (Cilium, MetalLB, Argo CD) as YAML; Mayastor DiskPool as derived JSON Schemas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream"
TALOS_MINORS = ("1.10", "1.11", "1.12", "1.13")
CILIUM_SCHEMAS = {"1.18": "v1.18.10", "1.19": "v1.19.4"}  # 1.17.14 ships no values schema here


@dataclass(frozen=True)
class SchemaIssue:
    document: int  # index of the YAML document (0-based), or 0
    path: str  # e.g. machine.network.interfaces[0].addresses
    message: str

    def __str__(self) -> str:
        return f"document {self.document}: {self.path or '(root)'}: {self.message}"


class SchemaValidationError(ValueError):
    def __init__(self, what: str, issues: list[SchemaIssue]):
        self.what = what
        self.issues = issues
        super().__init__(f"{what} rejected by its schema:\n" + "\n".join(f"  {i}" for i in issues))


def _minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def _path(err: jsonschema.ValidationError) -> str:
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


# ---------------------------------------------------------------------------------------------
# Talos


@cache
def talos_schema(version: str) -> dict[str, Any]:
    minor = _minor(version)
    if minor not in TALOS_MINORS:
        raise ValueError(f"no Talos machine-config schema for {version} (have {', '.join(TALOS_MINORS)})")
    return json.loads((UPSTREAM / "talos" / f"config.schema.v{minor}.json").read_text())


@cache
def _talos_kinds(version: str) -> dict[str, str]:
    """kind -> $defs name, from each definition's ``kind`` const/enum."""
    out: dict[str, str] = {}
    for name, d in talos_schema(version)["$defs"].items():
        kind = (d.get("properties") or {}).get("kind") or {}
        values = kind.get("enum") or ([kind["const"]] if "const" in kind else [])
        for v in values:
            out[v] = name
    return out


def talos_kinds(version: str) -> list[str]:
    return sorted(_talos_kinds(version))


def validate_talos_documents(docs: list[dict[str, Any]], version: str) -> list[SchemaIssue]:
    """Validate each machine-config document against the Talos schema of ``version``."""
    schema = talos_schema(version)
    issues: list[SchemaIssue] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            issues.append(SchemaIssue(i, "", "a document must be a mapping"))
            continue
        if "kind" in doc:
            name = _talos_kinds(version).get(doc["kind"])
            if name is None:
                issues.append(SchemaIssue(i, "kind", f"unknown document kind {doc['kind']!r} for Talos {_minor(version)}"))
                continue
        elif doc.get("version") == "v1alpha1":
            name = "v1alpha1.Config"
        else:
            issues.append(SchemaIssue(i, "", "neither 'version: v1alpha1' nor a 'kind': not a Talos config document"))
            continue
        sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}
        validator = jsonschema.Draft202012Validator(sub)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            issues.append(SchemaIssue(i, _path(err), err.message))
    return issues


def check_talos_documents(docs: list[dict[str, Any]], version: str, what: str = "Talos machine config") -> None:
    issues = validate_talos_documents(docs, version)
    if issues:
        raise SchemaValidationError(what, issues)


def load_documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def dump_documents(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


# ---------------------------------------------------------------------------------------------
# Cilium values


def cilium_values_schema_version(version: str) -> str:
    """The shipped schema that fits ``version``: the same minor, else the nearest shipped one."""
    minor = _minor(version)
    if minor in CILIUM_SCHEMAS:
        return CILIUM_SCHEMAS[minor]
    nearest = min(CILIUM_SCHEMAS, key=lambda m: abs(float(m) - float(minor)))
    return CILIUM_SCHEMAS[nearest]


@cache
def cilium_values_schema(version: str) -> dict[str, Any]:
    return json.loads((UPSTREAM / "cilium" / cilium_values_schema_version(version) / "values.schema.json").read_text())


def validate_cilium_values(values: dict[str, Any], version: str) -> list[SchemaIssue]:
    validator = jsonschema.Draft7Validator(cilium_values_schema(version))
    return [SchemaIssue(0, _path(e), e.message) for e in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))]


# ---------------------------------------------------------------------------------------------
# CRDs


def crd_files() -> dict[str, Path]:
    """Name -> path of every CRD YAML shipped (Cilium per version, MetalLB, Argo CD)."""
    out = {}
    for p in sorted(UPSTREAM.rglob("*.yaml")):
        rel = p.relative_to(UPSTREAM)
        out[str(rel)] = p
    return out


def cilium_crd_dir(version: str) -> Path:
    """The CRD directory of the shipped Cilium release nearest to ``version``."""
    shipped = {"1.17": "v1.17.14", "1.18": "v1.18.10", "1.19": "v1.19.4"}
    minor = _minor(version)
    key = minor if minor in shipped else min(shipped, key=lambda m: abs(float(m) - float(minor)))
    return UPSTREAM / "cilium" / shipped[key] / "crds"


def load_yaml_file(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def diskpool_schema(api_version: str = "v1beta2") -> dict[str, Any]:
    return json.loads((UPSTREAM / "mayastor" / f"diskpool.{api_version}.derived.schema.json").read_text())


def diskpool_api_version(mayastor_version: str) -> str:
    """DiskPool apiVersion Mayastor serves: v1beta2 for 2.5-2.8, v1beta3 from 2.9 (docs/FACTS.md)."""
    major, minor = (int(x) for x in _minor(mayastor_version).split("."))
    return "openebs.io/v1beta3" if (major, minor) >= (2, 9) else "openebs.io/v1beta2"
