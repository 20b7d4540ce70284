"""falkit's gateway to Kubernetes: the only falkit package that imports the ``kubernetes`` client
(``.importlinter`` contract ``kube-gateway``; the twin, which is not falkit, is outside it).

- :mod:`falkit.clients.kube.client` — the journaled ``ApiClient`` built from a kubeconfig
  (:func:`journaled_api_client`, what ``Target.kube()`` returns), its ``DynamicClient``
  (:func:`dynamic_client`) and :data:`ApiError`, the client's error for an error answer;
- :mod:`falkit.clients.kube.crud` — the one vocabulary for objects as plain dicts: :func:`kget`,
  :func:`klist`, :func:`served`, :func:`kcreate`, :func:`kapply`, :func:`kpatch`, :func:`kdelete`,
  :func:`kraw_get`, and :class:`KubeChanger` (how a step changes an object);
- :mod:`falkit.clients.kube.waits` — :func:`wait_for`, :func:`wait_until` and :class:`WaitReporter` (a
  wait says what it waits for), used by Proxmox and Argo CD waits too;
- :mod:`falkit.clients.kube.jobs` — the copy/checksum/write Job manifests and :func:`run_job`;
- :mod:`falkit.clients.kube.pods` — :func:`pod_state`, a Pod read as ``kubectl get pods`` shows it.
"""

from __future__ import annotations

from .client import ApiError, JournaledApiClient, dynamic_client, journaled_api_client
from .crud import FIELD_MANAGER, KubeChanger, kapply, kcreate, kdelete, kget, klist, kpatch, kraw_get, served
from .jobs import (
    BYTES_ANNOTATION,
    CLAIM_ANNOTATION,
    IMAGE,
    JOB_LABEL,
    SOURCE_ANNOTATION,
    TARGET_ANNOTATION,
    ChecksumParseError,
    JobFailedError,
    checksum_job,
    copy_job,
    job_name,
    job_pod_log,
    parse_checksum,
    run_job,
    write_job,
)
from .pods import pod_state
from .waits import REPORT_EVERY_S, WaitReporter, WaitTimeoutError, report_every, wait_for, wait_until

__all__ = [
    "BYTES_ANNOTATION", "CLAIM_ANNOTATION", "FIELD_MANAGER", "IMAGE", "JOB_LABEL", "REPORT_EVERY_S",
    "SOURCE_ANNOTATION", "TARGET_ANNOTATION", "ApiError", "ChecksumParseError", "JobFailedError",
    "JournaledApiClient", "KubeChanger", "WaitReporter", "WaitTimeoutError", "checksum_job", "copy_job",
    "dynamic_client", "job_name", "job_pod_log", "journaled_api_client", "kapply", "kcreate", "kdelete",
    "kget", "klist", "kpatch", "kraw_get", "parse_checksum", "pod_state", "report_every", "run_job", "served",
    "wait_for", "wait_until", "write_job",
]
