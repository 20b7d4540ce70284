"""YAML that remembers where each value came from.

``load_yaml(path)`` returns plain Python data plus a :class:`Positions` map from a field path
(a tuple of keys and list indexes) to ``(line, column)`` (1-based), so that a validation error
can name ``fal.yaml:42:7`` and ``cluster.workers[1].storage_ip``.

Rules, stricter than ``yaml.safe_load``:
- a duplicate key in a mapping is an error (PyYAML silently keeps the last one);
- timestamps stay strings (as papermill's loader does: a date-like value is never turned into a date);
- only one document per file;
- limits against hostile or broken files (each gives a one-line error naming ``file:line``):
  the file is at most :data:`MAX_BYTES` (1 MiB; The Fal's spec is ~10 KiB), checked before parsing;
  collections nest at most :data:`MAX_DEPTH` (64) levels deep, checked while composing (before
  Python's recursion limit could be reached); building the data visits at most :data:`MAX_NODES`
  (100,000) nodes, counting every alias expansion, so an alias bomb ("billion laughs") or a
  self-referencing anchor stops at once instead of growing without bound;
- the bytes must be UTF-8 without NUL or other control characters YAML forbids; the error names
  the line and column of the first bad byte;
- a value echoed in an error is cut to a short excerpt (:func:`excerpt`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError, SpecProblem, excerpt

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

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


class _LimitError(Exception):
    """A loader limit was hit at ``mark``."""

    def __init__(self, mark: Any, message: str):
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting-depth cap while composing (PyYAML's composer recurses per level)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(self.peek_event().start_mark,
                                  f"nested more than {MAX_DEPTH} levels deep (the loader's limit; a lab spec needs fewer than 10)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Keep timestamps as strings: remove the implicit resolver for them.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Budget:
    """How many nodes building the data may still visit (aliases count each time they are expanded)."""

    def __init__(self, nodes: int = MAX_NODES):
        self.left = nodes

    def spend(self, node: yaml.Node) -> None:
        self.left -= 1
        if self.left < 0:
            raise _LimitError(node.start_mark,
                              f"the document expands to more than {MAX_NODES:,} values (the loader's limit): "
                              "an alias bomb or a self-referencing anchor? Write the values out instead of nesting aliases")


def _construct(loader: _Loader, node: yaml.Node, path: FieldPath, pos: Positions, problems: list,
               budget: _Budget | None = None, depth: int = 0) -> Any:
    budget = budget or _Budget()
    budget.spend(node)
    if depth > MAX_DEPTH:  # aliases can nest deeper than the text does
        raise _LimitError(node.start_mark, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded (the loader's limit)")
    pos.set(path, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            budget.spend(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(pos.problem(path, f"mapping keys must be strings, got a {key_node.id}"))
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(pos.problem(path, f"mapping keys must be strings, got {excerpt(key)}"))
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
                        f"duplicate key {excerpt(key)} (first defined on line {first_line}); YAML would silently keep the last one",
                    )
                )
                continue
            pos.set(path + (key,), key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(loader, value_node, path + (key,), pos, problems, budget, depth + 1)
            # the key's own position is the more useful one for "field X: ..." messages
            pos.set(path + (key,), key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, child, path + (i,), pos, problems, budget, depth + 1) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _too_big(file: str, size: int) -> SpecError:
    return SpecError([SpecProblem(file, 1, None, "", f"the file is {size:,} bytes, over the loader's limit of {MAX_BYTES:,} "
                                                     "(1 MiB; a lab spec is a few KiB): refused before parsing")])


def parse_yaml(text: str, file: str = "<string>") -> tuple[Any, Positions]:
    """Parse YAML text; raise :class:`SpecError` on malformed YAML, duplicate keys or a loader limit."""
    if len(text) > MAX_BYTES:
        raise _too_big(file, len(text))
    pos = Positions(file)
    problems: list[SpecProblem] = []
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here
        node = loader.get_single_node()
        if node is None:
            raise SpecError([SpecProblem(file, 1, 1, "", "the file is empty; expected a mapping of lab settings")])
        data = _construct(loader, node, (), pos, problems)
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = exc.character if isinstance(exc.character, int) else 0
        what = "a NUL byte" if char == 0 else f"control character U+{char:04X}"
        raise SpecError([SpecProblem(file, line, col, "", f"{what}: YAML allows only printable characters "
                                                           "(is this a binary file?)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        msg = f"malformed YAML: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            msg = f"malformed YAML: {exc.problem} ({exc.context})"
        raise SpecError([SpecProblem(file, line, col, "", msg)]) from None
    except yaml.YAMLError as exc:  # composer errors without marks
        raise SpecError([SpecProblem(file, None, None, "", f"malformed YAML: {excerpt(str(exc), 120)}")]) from None
    except _LimitError as exc:
        raise SpecError([SpecProblem(file, exc.mark.line + 1, exc.mark.column + 1, "", exc.message)]) from None
    except RecursionError:  # a last resort: the limits above should stop any nesting first
        raise SpecError([SpecProblem(file, None, None, "", "nested too deeply for the loader")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise SpecError(problems)
    return data, pos


def load_yaml(path: str | Path) -> tuple[Any, Positions]:
    """Read and parse a YAML file with positions: at most :data:`MAX_BYTES`, UTF-8."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                raise _too_big(str(path), size)
            raw = fh.read(MAX_BYTES + 1)  # a pipe or device may not tell its size
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), None, None, "", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise _too_big(str(path), len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([SpecProblem(str(path), line, col, "", f"byte 0x{raw[exc.start]:02x} is not UTF-8: "
                                                                "save the file as UTF-8")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_yaml(text, str(path))
