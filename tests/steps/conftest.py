"""Fixtures of the step tests: The Fal's spec, a progress recorder, and a target over a real twin
pve process (tests/twin/pve_fixtures.py starts it; nothing is mocked)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "steps"))

from lab_fixtures import lab_before  # noqa: E402, F401 - fixture
from pve_fixtures import pve_before  # noqa: E402, F401 - fixture

from falkit.model.spec import load_spec  # noqa: E402


@pytest.fixture(scope="session")
def fal():
    return load_spec(ROOT / "parameters" / "fal.yaml")


@dataclass
class Recorder:
    """A Progress that keeps what it was told (log lines and every bar's updates)."""

    lines: list[str] = field(default_factory=list)
    bars: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def task(self, name: str, total: float | None = None):
        self.bars[name] = []
        return lambda value, message="": self.bars[name].append((value, message))

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def progress():
    return Recorder()

from steps_support import PveTarget  # noqa: E402,F401  (re-exported)
