"""Preflight findings: one YAML case per check (tests/data/findings/*.yaml: a patch of The Fal's
spec, the finding ids and severities it must produce, and ids that must be absent), plus The Fal
as the seed describes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import FAL, patched, write_yaml

from falkit.model.findings import CHECKS, cilium_api, preflight
from falkit.model.spec import load_spec

CASES = sorted((Path(__file__).parent / "data" / "findings").glob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_finding_case(case: Path, tmp_path: Path) -> None:
    spec_case = yaml.safe_load(case.read_text())
    spec = load_spec(write_yaml(tmp_path, patched(spec_case.get("patch") or {})))
    found = {(f.id, f.severity) for f in preflight(spec)}
    ids = {i for i, _ in found}
    for fid, severity in (spec_case.get("expect") or {}).items():
        assert (fid, severity) in found, f"{case.stem}: expected {fid} [{severity}], got {sorted(found)}"
    for fid in spec_case.get("absent") or []:
        assert fid not in ids, f"{case.stem}: {fid} should be absent"
    if "api_pool" in spec_case:
        assert cilium_api(spec.versions.cilium)["pool"] == spec_case["api_pool"]


def test_every_check_has_a_case() -> None:
    """Each registered check must be exercised by at least one case file naming one of its ids."""
    named = set()
    for case in CASES:
        c = yaml.safe_load(case.read_text())
        named |= set((c.get("expect") or {}).keys()) | set(c.get("absent") or [])
    prefixes = {fid.split(".")[0] for fid in named}
    assert {"addr", "budget", "mayastor", "talos", "cilium", "perf"} <= prefixes
    assert len(CHECKS) >= 12


def test_the_fal_as_in_the_seed() -> None:
    """The seed's lab: warnings, no errors, and the facts the seed gets wrong, with numbers."""
    findings = preflight(load_spec(FAL))
    by_id = {f.id: f for f in findings}
    assert not [f for f in findings if f.severity == "error"]
    assert by_id["budget.memory"].severity == "warning"
    assert "31 GB" in by_id["budget.memory"].message and "32 GB of 32 GB" in by_id["budget.memory"].message
    assert by_id["mayastor.hugepages"].severity == "warning" and "zero slack" in by_id["mayastor.hugepages"].message
    assert "coreList [1]" in by_id["mayastor.io-engine-cores"].message
    assert "one physical disk" in by_id["mayastor.failure-domain-disk"].message
    assert by_id["perf.claim-seq_write"].data == {"claim": 600, "ceiling": pytest.approx(500 / 3)}
    assert by_id["perf.claim-seq_read"].data["ceiling"] == 550
    assert by_id["talos.nvme-tcp-name"].severity == "info"
    assert by_id["cilium.api"].data["pool"] == "cilium.io/v2"
    assert "perf.claim-rand_iops" not in by_id


def test_findings_sorted_errors_first(tmp_path: Path) -> None:
    spec = load_spec(write_yaml(tmp_path, patched({"truenas.enabled": True})))
    sev = [f.severity for f in preflight(spec)]
    assert sev == sorted(sev, key=["error", "warning", "info"].index)
