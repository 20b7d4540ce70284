"""Helpers the rollback modules share: object metadata accessors, the wait, the checksum Job."""

from __future__ import annotations

from typing import Any

from ...clients.kube import checksum_job, job_name, parse_checksum, run_job, wait_until


def _md(o: dict) -> dict:
    return o.get("metadata") or {}


def _ann(o: dict) -> dict:
    return _md(o).get("annotations") or {}


def _key(o: dict) -> str:
    return f"{_md(o).get('namespace')}/{_md(o).get('name')}"


_wait = wait_until  # (step, what, timeout, fn, poll)


def _checksum(api: Any, ns: str, claim: str, timeout: float) -> str:
    return parse_checksum(run_job(api, checksum_job(job_name("checksum", claim), ns, claim), timeout))
