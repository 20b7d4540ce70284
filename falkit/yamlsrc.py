"""YAML that remembers where each value came from.

``load_yaml(path)`` returns plain Python data plus a :class:`Positions` map from a field path
(a tuple of keys and list indexes) to ``(line, column)`` (1-based), so that a validation error
can name ``fal.yaml:42:7`` and ``cluster.workers[1].storage_ip``.

Rules, stricter than ``yaml.safe_load``:
- a duplicate key in a mapping is an error (PyYAML silently keeps the last one);
- timestamps stay strings (as papermill's loader does: a date-like value is never turned into a date);
- only one document per file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError, SpecProblem

Key = str | int
FieldPath = tuple[Key, ...]


def format_path(path: FieldPath) -> str:
    """``("cluster", "workers", 1, "storage_ip")`` -> ``cluster.workers[1].storage_ip``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class Positions:
    """Field path -> (line, column), 1-based. Falls back to the nearest known parent."""

    def __init__(self, file: str):
        self.file = file
        self._pos: dict[FieldPath, tuple[int, int]] = {}

    def set(self, path: FieldPath, line: int, column: int) -> None:
        self._pos[path] = (line, column)

    def get(self, path: FieldPath) -> tuple[int | None, int | None]:
        path = tuple(path)
        while True:
            if path in self._pos:
                return self._pos[path]
            if not path:
                return (None, None)
            path = path[:-1]

    def problem(self, path: FieldPath, message: str) -> SpecProblem:
        line, col = self.get(path)
        return SpecProblem(self.file, line, col, format_path(path), message)


class _Loader(yaml.SafeLoader):
    pass


# Keep timestamps as strings: remove the implicit resolver for them.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct(loader: _Loader, node: yaml.Node, path: FieldPath, pos: Positions, problems: list) -> Any:
    pos.set(path, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(pos.problem(path, f"mapping keys must be strings, got {key!r}"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                first_line, _ = pos.get(path + (key,))
                problems.append(
                    SpecProblem(
                        pos.file,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        format_path(path + (key,)),
                        f"duplicate key {key!r} (first defined on line {first_line}); YAML would silently keep the last one",
                    )
                )
                continue
            pos.set(path + (key,), key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(loader, value_node, path + (key,), pos, problems)
            # the key's own position is the more useful one for "field X: ..." messages
            pos.set(path + (key,), key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, child, path + (i,), pos, problems) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str = "<string>") -> tuple[Any, Positions]:
    """Parse YAML text; raise :class:`SpecError` on malformed YAML or duplicate keys."""
    pos = Positions(file)
    loader = _Loader(text)
    problems: list[SpecProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([SpecProblem(file, 1, 1, "", "the file is empty; expected a mapping of lab settings")])
        data = _construct(loader, node, (), pos, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        msg = f"malformed YAML: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            msg = f"malformed YAML: {exc.problem} ({exc.context})"
        raise SpecError([SpecProblem(file, line, col, "", msg)]) from None
    except yaml.YAMLError as exc:  # composer errors without marks
        raise SpecError([SpecProblem(file, None, None, "", f"malformed YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return data, pos


def load_yaml(path: str | Path) -> tuple[Any, Positions]:
    """Read and parse a YAML file with positions."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), None, None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, str(path))
