"""rollback-mayastor: what the migration left of Mayastor in the cluster, removed — after
rollback-volumes has put every workload back on its original claim.

- **claims** the before-state did not have: falkit's own (label ``app.kubernetes.io/managed-by:
  falkit`` without ``falkit.io/migrated-from``: 70-validation's test claim, 50-mayastor's fio
  claims) are deleted — they hold test data falkit wrote; a Mayastor copy of a workload's volume
  (``falkit.io/migrated-from``) is rollback-volumes' (deleted only with ``delete_migrated_volumes``);
  any other claim is not falkit's and is left (a note; the comparison shows it);
- the **StorageClass** ``spec.mayastor.storage_class`` (and any other Mayastor class the
  before-state did not have) is deleted once no claim that stays uses it; the Mayastor
  **DiskPools** once no claim that stays is on a Mayastor class (a pool holds the copies'
  replicas: while the copies are kept, so are the pools and the class — ``kept
  (delete_migrated_volumes=False)`` in the comparison).

The Mayastor node label (``openebs.io/engine``) is Talos' (``machine.nodeLabels``): rollback-talos
removes it with the re-IP config. Without a recorded before-state the claims falkit made are
recognised by their label, and every DiskPool and Mayastor class counts as the migration's.

Typed payloads (issue 18): every change is a ``KubeDelete`` (claims first, then classes, then pools).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...clients.kube import ApiError, klist
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import KubeDelete, ObjectRef
from ...render.mayastorvalues import PROVISIONER
from ..base import Progress, StepOptions
from ..executors import execute
from ..volumes import MIGRATED_FROM
from ._common import _ann, _key, _md
from .state import MAYASTOR_POOL, recorded_before

MANAGED = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class MayastorFacts:
    before: dict[str, str] | None
    claims: tuple[dict, ...]
    classes: tuple[dict, ...]
    pools: tuple[dict, ...]


def observe_mayastor(target: Any, spec: LabSpec) -> MayastorFacts:
    api = target.kube()
    before = recorded_before(target)
    return MayastorFacts(before.fields if before and before.fields else None, tuple(klist(api, "v1", "PersistentVolumeClaim")),
                         tuple(klist(api, "storage.k8s.io/v1", "StorageClass")), tuple(klist(api, *MAYASTOR_POOL)))


def _had(before: dict[str, str] | None, area: str, subject: str) -> bool:
    return before is not None and any(k.startswith(f"{area}|{subject}|") for k in before)


def plan_mayastor_back(spec: LabSpec, f: MayastorFacts, options: StepOptions) -> Plan:
    if spec.previous is None:
        return Plan("rollback-mayastor", notes=("the spec has no 'previous' section: a new build keeps Mayastor",))
    changes, noops, notes = [], [], []
    mayastor_classes = {_md(c)["name"] for c in f.classes if c.get("provisioner") == PROVISIONER}
    staying: list[dict] = []
    for c in f.claims:
        key = _key(c)
        if _had(f.before, "claim", key):
            staying.append(c)
            continue
        if _ann(c).get(MIGRATED_FROM):
            staying.append(c) if not options.extra.get("delete_migrated_volumes", False) else None
            continue
        if (_md(c).get("labels") or {}).get(MANAGED) == "falkit":
            changes.append(Change("delete", "claim", key, old=(c.get("spec") or {}).get("storageClassName"),
                                  reason="falkit's own test claim (validation / benchmarks), not in the before-state",
                                  data=KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", _md(c)["namespace"],
                                                            _md(c)["name"]))))
            continue
        staying.append(c)
        if f.before is not None:
            notes.append(f"claim {key} is not in the before-state and not falkit's: left as it is")
    used = {(c.get("spec") or {}).get("storageClassName") for c in staying}
    for sc in f.classes:
        name = _md(sc)["name"]
        if name not in mayastor_classes or _had(f.before, "storageclass", name):
            continue
        if name in used:
            noops.append(Noop("storageclass", name, "kept: claims that stay use it (the Mayastor copies, "
                                                     "delete_migrated_volumes=False)"))
            continue
        changes.append(Change("delete", "storageclass", name, old=sc.get("provisioner"),
                              reason="not in the before-state; no claim uses it",
                              data=KubeDelete(ObjectRef("storage.k8s.io/v1", "StorageClass", "", name))))
    on_mayastor = [c for c in staying if (c.get("spec") or {}).get("storageClassName") in mayastor_classes]
    for p in f.pools:
        key = _key(p)
        if _had(f.before, "diskpool", key):
            continue
        if on_mayastor:
            noops.append(Noop("diskpool", key, f"kept: {len(on_mayastor)} claim(s) that stay have replicas on the pools"))
            continue
        changes.append(Change("delete", "diskpool", key, old=(p.get("spec") or {}).get("node"),
                              reason="not in the before-state; no Mayastor volume stays",
                              data=KubeDelete(ObjectRef(*MAYASTOR_POOL, _md(p)["namespace"], _md(p)["name"]))))
    return Plan("rollback-mayastor", tuple(changes), tuple(noops), tuple(notes))


def apply_mayastor_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    order = {"claim": 0, "storageclass": 1, "diskpool": 2}
    try:
        for c in sorted(plan.changes, key=lambda c: order.get(c.kind, 9)):
            progress.log(f"rollback-mayastor: {c.describe()}")
            execute(target, [c], progress, options.wait_timeout_s, step="rollback-mayastor")
    except ApiError as e:
        raise StepError("rollback-mayastor", f"{e.status} {e.reason}: {e.body}") from e
