"""The test helper modules (tests/, tests/twin/) are importable by name, with pytest's assertion
rewriting, from every test directory."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "twin"))
pytest.register_assert_rewrite("helpers", "pve_fixtures", "lab_fixtures", "serving", "gates_support")
