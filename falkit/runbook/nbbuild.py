"""Build the notebooks from their percent-format sources: ``python -m falkit.runbook.nbbuild [--check]``.

Sources are ``notebooks/src/NN-name.py`` in the percent format (as jupytext writes it)::

    # %% [markdown]
    # # Title
    # text
    # %% tags=["parameters"]
    params = "../parameters/fal.yaml"
    # %%
    lab = runbook.open(params, ...)

Each ``# %%`` line starts a cell; ``[markdown]`` makes a markdown cell (its ``# `` comment prefixes
are removed); ``tags=[...]`` (a JSON list) becomes the cell's ``metadata.tags`` — papermill needs
the ``parameters`` tag. A ``# %%`` line may carry a title (``# %% Create the VMs``), which is
ignored. Output is ``notebooks/NN-name.ipynb``: nbformat 4.5, the python3 kernel, no outputs,
deterministic cell ids, so a build is reproducible and ``--check`` fails when an ``.ipynb`` is stale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ..twin import supervisor
from .jupyter import ipc_kernel_config

ROOT = Path(__file__).resolve().parents[2]
_HEADER = re.compile(r"^# %%(?P<rest>.*)$")
_TAGS = re.compile(r"tags\s*=\s*(\[[^\]]*\])")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


class NbBuildError(ValueError):
    """A notebook source cannot be parsed."""


def parse_source(text: str, name: str = "<source>") -> list[dict]:
    """Cells of a percent-format source: ``[{"type": "code"|"markdown", "source": str, "tags": [...]}]``."""
    cells: list[dict] = []
    current: dict | None = None
    preamble: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            rest = m.group("rest")
            kind = "markdown" if "[markdown]" in rest or "[md]" in rest else "code"
            tags: list[str] = []
            t = _TAGS.search(rest)
            if t:
                try:
                    tags = json.loads(t.group(1))
                except ValueError as exc:
                    raise NbBuildError(f"{name}:{lineno}: tags must be a JSON list of strings: {t.group(1)}") from exc
                if not all(isinstance(x, str) for x in tags):
                    raise NbBuildError(f"{name}:{lineno}: tags must be strings")
            current = {"type": kind, "lines": [], "tags": tags}
            cells.append(current)
        elif current is None:
            preamble.append(line)
        else:
            current["lines"].append(line)
    if any(p.strip() and not p.startswith("#") for p in preamble):
        raise NbBuildError(f"{name}: code before the first '# %%' line")
    out = []
    for c in cells:
        lines = c["lines"]
        if c["type"] == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in lines]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        while lines and not lines[0].strip():
            lines = lines[1:]
        out.append({"type": c["type"], "source": "\n".join(lines), "tags": c["tags"]})
    return out


def build_notebook(text: str, stem: str) -> nbformat.NotebookNode:
    """A notebook (no outputs, deterministic ids ``<stem>-<n>``) from a percent-format source."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for i, c in enumerate(parse_source(text, stem)):
        meta = {"tags": c["tags"]} if c["tags"] else {}
        cell_id = re.sub(r"[^A-Za-z0-9-]", "-", f"{stem}-{i}")[:64]
        if c["type"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(c["source"], metadata=meta, id=cell_id)
        else:
            cell = nbformat.v4.new_code_cell(c["source"], metadata=meta, id=cell_id)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, execution counts and execution metadata (what the source defines)."""
    out = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    out.metadata.pop("widgets", None)
    return out


def _same_source(path: Path, built: nbformat.NotebookNode) -> bool:
    """The notebook at ``path`` has exactly the built cells (its stored outputs do not count)."""
    try:
        have = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return False
    def cells(nb: nbformat.NotebookNode) -> list:
        return [(c.cell_type, c.source, c.get("id"), {k: v for k, v in c.metadata.items() if k != "execution"})
                for c in nb.cells]

    return cells(have) == cells(built) and have.metadata.get("kernelspec") == built.metadata.get("kernelspec")


def build(src_dir: Path, out_dir: Path, check: bool = False) -> list[str]:
    """Build every ``src_dir/*.py`` into ``out_dir/*.ipynb``; returns the stale/written names.

    A notebook whose cells already match its source keeps its stored outputs (the nbval
    reference, refreshed with ``--execute``). ``check=True`` writes nothing and returns the
    notebooks that are missing or differ.
    """
    changed = []
    for src in sorted(src_dir.glob("[0-9]*.py")):
        target = out_dir / f"{src.stem}.ipynb"
        built = build_notebook(src.read_text(), src.stem)
        text = render(built)
        if target.exists() and _same_source(target, built):
            continue
        changed.append(target.name)
        if not check:
            target.write_text(text)
    return changed


def execute(out_dir: Path, names: list[str] | None = None, timeout_s: int = 600) -> list[str]:
    """Execute the notebooks in order, as an operator opening them would (their default parameters:
    ``target="twin"``, ``apply=False`` — plans shown, nothing applied), against a fresh twin in its
    "before" state in a temporary state dir, and store the outputs: the reference nbval compares
    with. A cell tagged ``raises-exception`` may fail (70-validation on an unmigrated lab)."""


    done = []
    with tempfile.TemporaryDirectory(prefix="falkit-nbexec-") as tmp:
        old = os.environ.get("FALKIT_STATE_DIR")
        os.environ["FALKIT_STATE_DIR"] = tmp
        try:
            for path in sorted(out_dir.glob("[0-9]*.ipynb")):
                if names and path.stem not in names:
                    continue
                nb = strip_outputs(nbformat.read(path, as_version=4))
                NotebookClient(nb, timeout=timeout_s, kernel_name="python3", config=ipc_kernel_config(),
                               resources={"metadata": {"path": str(out_dir)}}).execute()
                for cell in nb.cells:  # run timestamps would churn every refresh's diff
                    cell.metadata.pop("execution", None)
                nbformat.write(nb, path)
                done.append(path.name)
        finally:
            supervisor.down(Path(tmp) / "twin")
            if old is None:
                os.environ.pop("FALKIT_STATE_DIR", None)
            else:
                os.environ["FALKIT_STATE_DIR"] = old
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falkit.runbook.nbbuild", description="build notebooks/*.ipynb from notebooks/src/*.py")
    ap.add_argument("--src", type=Path, default=ROOT / "notebooks" / "src")
    ap.add_argument("--out", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--check", action="store_true", help="fail if a notebook is missing or stale")
    ap.add_argument("--execute", nargs="*", metavar="NAME", default=None,
                    help="then execute the notebooks (or the named ones) against a fresh twin, storing the outputs nbval compares")
    args = ap.parse_args(argv)
    if args.execute is not None and not args.check:
        build(args.src, args.out)
        ran = execute(args.out, args.execute or None)
        print(f"executed {len(ran)} notebook(s) against a fresh twin: {', '.join(ran)}")
        return 0
    changed = build(args.src, args.out, check=args.check)
    if args.check:
        if changed:
            print(f"stale notebooks (run python -m falkit.runbook.nbbuild): {', '.join(changed)}", file=sys.stderr)
            return 1
        print("notebooks are up to date")
        return 0
    print(f"built {len(changed)} notebook(s)" + (f": {', '.join(changed)}" if changed else " (all up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
