"""Shared test helpers: load The Fal's spec as data and patch it by dotted paths."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FAL = ROOT / "parameters" / "fal.yaml"
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def fal_data() -> dict:
    return yaml.safe_load(FAL.read_text())


def set_path(data: dict, dotted: str, value) -> None:
    parts = [int(i) if i else k for k, i in _TOKEN.findall(dotted)]
    cur = data
    for p in parts[:-1]:
        cur = cur[p]
    cur[parts[-1]] = value


def patched(patch: dict) -> dict:
    data = copy.deepcopy(fal_data())
    for k, v in patch.items():
        set_path(data, k, v)
    return data


def write_yaml(tmp_path: Path, data: dict, name: str = "lab.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p
