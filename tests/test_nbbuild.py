"""falkit.runbook.nbbuild: percent-format sources -> notebooks.

Covers: markdown and code cells, cell tags kept (papermill's ``parameters``), a round trip of
source -> notebook -> cells; deterministic output; ``--check`` fails for a stale or missing notebook
and passes after a build; the repository's notebooks are up to date with their sources; papermill
finds the parameters cell of a built notebook.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from falkit.runbook.nbbuild import NbBuildError, build, build_notebook, main, parse_source, render

SRC = '''# %% [markdown]
# # Title
#
# Some *text*.

# %% tags=["parameters"]
params = "../parameters/fal.yaml"
apply = False

# %% Apply the step
x = 1
print(x)

# %% tags=["nbval-ignore-output", "raises-exception"]
y = 2
'''


def test_round_trip_keeps_cells_and_tags():
    nb = build_notebook(SRC, "10-demo")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    assert nb.cells[0].source == "# Title\n\nSome *text*."
    assert nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.cells[1].source == 'params = "../parameters/fal.yaml"\napply = False'
    assert "tags" not in nb.cells[2].metadata and nb.cells[2].source == "x = 1\nprint(x)"
    assert nb.cells[3].metadata["tags"] == ["nbval-ignore-output", "raises-exception"]
    assert nb.metadata["kernelspec"]["name"] == "python3"
    again = nbformat.reads(render(nb), as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in again.cells] == \
        [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells]
    assert render(build_notebook(SRC, "10-demo")) == render(nb)  # deterministic ids


def test_parse_errors():
    with pytest.raises(NbBuildError, match="before the first"):
        parse_source("x = 1\n# %%\ny = 2\n")
    with pytest.raises(NbBuildError, match="JSON list"):
        parse_source("# %% tags=[parameters]\nx = 1\n")


def test_check_detects_stale_and_missing(tmp_path):
    src, out = tmp_path / "src", tmp_path / "nb"
    src.mkdir()
    out.mkdir()
    (src / "10-demo.py").write_text(SRC)
    assert main(["--src", str(src), "--out", str(out), "--check"]) == 1  # missing
    assert build(src, out) == ["10-demo.ipynb"]
    assert main(["--src", str(src), "--out", str(out), "--check"]) == 0
    (src / "10-demo.py").write_text(SRC.replace("x = 1", "x = 2"))
    assert build(src, out, check=True) == ["10-demo.ipynb"]
    assert json.loads((out / "10-demo.ipynb").read_text())["cells"][2]["source"] == ["x = 1\n", "print(x)"]


def test_papermill_finds_the_parameters_cell(tmp_path):
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    path = tmp_path / "10-demo.ipynb"
    path.write_text(render(build_notebook(SRC, "10-demo")))
    done = parameterize_notebook(load_notebook_node(str(path)), {"apply": True})
    tags = [c.metadata.get("tags", []) for c in done.cells]
    assert tags[2] == ["injected-parameters"] and "apply = True" in done.cells[2].source


def test_repository_preflight_notebook_is_built():
    import nbformat

    from falkit.runbook.nbbuild import ROOT, strip_outputs

    built = ROOT / "notebooks" / "00-preflight.ipynb"
    text = render(build_notebook((ROOT / "notebooks" / "src" / "00-preflight.py").read_text(), "00-preflight"))
    stored = nbformat.read(built, as_version=4)
    # the repository's notebook is the built one plus its stored outputs (the nbval reference)
    assert [(c.cell_type, c.source) for c in strip_outputs(stored).cells] == \
        [(c.cell_type, c.source) for c in nbformat.reads(text, as_version=4).cells]
    assert any(c.get("outputs") for c in stored.cells if c.cell_type == "code")


def test_notebooks_call_only_the_facade():
    """Notebooks stay thin (issue 18): from falkit they import only the runbook facade, and every call
    in a cell is ``runbook.open`` or a call on the ``lab`` it returns (or on the parameters cell's
    ``options`` dict) — no domain module's display (``benchmarks.report(lab)``, ``handoff.show``)."""
    import ast

    from falkit.runbook.nbbuild import ROOT

    for src in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        tree = ast.parse(src.read_text())
        imports = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert imports == ["from falkit import runbook"], (src.name, imports)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                root = node.func
                while isinstance(root, ast.Attribute | ast.Call):
                    root = root.value if isinstance(root, ast.Attribute) else root.func
                assert isinstance(root, ast.Name) and root.id in ("runbook", "lab", "options"), \
                    (src.name, ast.unparse(node))
