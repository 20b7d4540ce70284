"""Kubernetes Job manifests for data work on PVCs: copy, checksum, write (pure builders + parsers),
and :func:`run_job` (create, wait, read the pod log) over the official client.

Every Job is a ``batch/v1`` Job with one busybox container running real POSIX shell, so the same
manifest works on the live lab. The contract is the twin's (``falkit/twin/lab/jobs.py``
docstring), which recognises the Jobs by the label ``falkit.io/job`` and simulates the data:

=========  ===============================================  ==========================================
kind       annotations                                      pod log
=========  ===============================================  ==========================================
copy       ``falkit.io/source-pvc``, ``falkit.io/target-pvc``  ``copied N bytes``
checksum   ``falkit.io/pvc``                                ``sha256  <hex>``
write      ``falkit.io/pvc``, ``falkit.io/bytes``            ``wrote N bytes`` (fresh random data)
=========  ===============================================  ==========================================

The checksum is ``sha256sum`` over the sorted per-file ``sha256sum`` lines of every regular file
below the mount, with paths relative to it: two volumes holding the same files at the same paths
give the same value, whatever the filesystem. On the twin the values are modelled (one checksum
per PV; the lab fault ``corrupt_copy`` makes a copy differ from its source).
"""

from __future__ import annotations

import re
import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .waits import WaitReporter

IMAGE = "busybox:1.37"
JOB_LABEL = "falkit.io/job"
SOURCE_ANNOTATION = "falkit.io/source-pvc"
TARGET_ANNOTATION = "falkit.io/target-pvc"
CLAIM_ANNOTATION = "falkit.io/pvc"
BYTES_ANNOTATION = "falkit.io/bytes"

_CHECKSUM_SH = ("printf 'sha256  %s\\n' \"$(cd /data && find . -type f -print0 | sort -z | xargs -0 sha256sum"
                " | sha256sum | cut -d' ' -f1)\"")
_COPY_SH = 'cp -a /src/. /dst/ && sync && echo "copied $(du -sb /dst | cut -f1) bytes"'
_WRITE_SH = 'head -c "$FALKIT_BYTES" /dev/urandom > /data/falkit-data.bin && sync && echo "wrote $FALKIT_BYTES bytes"'
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


def _job(name: str, namespace: str, kind: str, annotations: dict[str, str], script: str,
         volumes: list[tuple[str, str, str, bool]], ttl: int | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """volumes: ``(volume name, claim, mount path, read-only)``."""
    labels = {JOB_LABEL: kind, "app.kubernetes.io/managed-by": "falkit"}
    container: dict[str, Any] = {
        "name": kind,
        "image": IMAGE,
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [{"name": v, "mountPath": p, "readOnly": ro} for v, _, p, ro in volumes],
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": {
                "restartPolicy": "Never",
                "containers": [container],
                "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": c, "readOnly": ro}}
                            for v, c, _, ro in volumes],
            },
        },
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
            "spec": spec}


def copy_job(name: str, namespace: str, source_claim: str, target_claim: str, ttl: int | None = 3600) -> dict[str, Any]:
    """Copy every file of ``source_claim`` (mounted read-only) onto ``target_claim``, keeping
    owners, modes and times (``cp -a``). Both claims must be in ``namespace``."""
    ann = {SOURCE_ANNOTATION: source_claim, TARGET_ANNOTATION: target_claim}
    return _job(name, namespace, "copy", ann, _COPY_SH,
                [("src", source_claim, "/src", True), ("dst", target_claim, "/dst", False)], ttl)


def checksum_job(name: str, namespace: str, claim: str, ttl: int | None = 3600) -> dict[str, Any]:
    """Print ``sha256  <hex>`` of the files on ``claim`` (mounted read-only)."""
    return _job(name, namespace, "checksum", {CLAIM_ANNOTATION: claim}, _CHECKSUM_SH,
                [("data", claim, "/data", True)], ttl)


def write_job(name: str, namespace: str, claim: str, nbytes: int = 16 * 1024 * 1024, ttl: int | None = 3600) -> dict[str, Any]:
    """Write ``nbytes`` of fresh random data to ``/data/falkit-data.bin`` on ``claim``."""
    if nbytes <= 0:
        raise ValueError(f"nbytes must be > 0, got {nbytes}")
    return _job(name, namespace, "write", {CLAIM_ANNOTATION: claim, BYTES_ANNOTATION: str(nbytes)}, _WRITE_SH,
                [("data", claim, "/data", False)], ttl, env={"FALKIT_BYTES": str(nbytes)})


class ChecksumParseError(ValueError):
    """A checksum Job's log does not contain a checksum."""


def parse_checksum(log: str) -> str:
    """The checksum in a checksum Job's log: the last ``sha256  <hex>`` line, or failing that the
    last 64-hex token. Raises :class:`ChecksumParseError`."""
    for line in reversed(log.strip().splitlines()):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "sha256" and _HEX64.fullmatch(parts[1].lower()):
            return parts[1].lower()
    hits = _HEX64.findall(log.lower())
    if hits:
        return hits[-1]
    head = " | ".join(log.strip().splitlines()[-3:])
    raise ChecksumParseError(f"no checksum in the Job log (last lines: {head or '<empty>'})")


def job_name(kind: str, claim: str, suffix: str = "") -> str:
    """A valid Job name (DNS label, <= 63) for ``kind`` on ``claim``: ``falkit-<kind>-<claim>[-suffix]``."""
    base = f"falkit-{kind}-{claim}"
    tail = f"-{suffix}" if suffix else ""
    room = 63 - len(tail)
    return (base[:room].rstrip("-") + tail).lower()


# ---------------------------------------------------------------------------------------------
# Running a Job (official kubernetes client; the same calls against the twin and the live lab)


class JobFailedError(RuntimeError):
    """A Job failed or did not finish in time. Carries the Job's name and its pod log tail."""

    def __init__(self, name: str, message: str, log: str = ""):
        self.job = name
        self.log = log
        tail = " | ".join(log.strip().splitlines()[-5:])
        super().__init__(f"job {name}: {message}" + (f" (log: {tail})" if tail else ""))


def job_pod_log(api_client: Any, namespace: str, name: str) -> str:
    """The log of the (last) pod of Job ``name`` (pods carry ``job-name=<name>``)."""
    core = client.CoreV1Api(api_client)
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    if not pods:
        pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}").items
    if not pods:
        return ""
    pods.sort(key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name))
    return core.read_namespaced_pod_log(pods[-1].metadata.name, namespace) or ""


def run_job(api_client: Any, manifest: dict[str, Any], timeout_s: float = 600.0, poll_s: float = 0.2,
            on_poll: Any = None) -> str:
    """Create ``manifest`` (replacing a finished Job of the same name), wait until it succeeds and
    return its pod log. Raises :class:`JobFailedError` when it fails or ``timeout_s`` passes.
    ``on_poll(elapsed_s)`` is called on every poll (for a progress bar)."""
    batch = client.BatchV1Api(api_client)
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        batch.delete_namespaced_job(name, ns, propagation_policy="Background")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                batch.read_namespaced_job(name, ns)
            except ApiException as e:
                if e.status == 404:
                    break
                raise
            time.sleep(poll_s)
    except ApiException as e:
        if e.status != 404:
            raise
    batch.create_namespaced_job(ns, manifest)
    start = time.monotonic()
    report = WaitReporter(f"Job {ns}/{name}", timeout_s)
    while True:
        job = batch.read_namespaced_job_status(name, ns)
        st = job.status
        if st and (st.succeeded or 0) >= 1:
            return job_pod_log(api_client, ns, name)
        failed = st and ((st.failed or 0) >= 1 or any(c.type == "Failed" and c.status == "True" for c in st.conditions or []))
        if failed:
            raise JobFailedError(name, "failed", job_pod_log(api_client, ns, name))
        elapsed = time.monotonic() - start
        report(f"{(st.active or 0) if st else 0} pod(s) active, {(st.succeeded or 0) if st else 0} succeeded")
        if on_poll:
            on_poll(elapsed)
        if elapsed > timeout_s:
            raise JobFailedError(name, f"did not finish within {timeout_s:g} s", job_pod_log(api_client, ns, name))
        time.sleep(poll_s)
