"""The stored notebook: clean (no outputs), parameterised for papermill, and built on the report's reader.

Executing it is the ``notebook`` tier in tests/test_report_e2e.py; these checks need no run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.unit

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tfma_slices.ipynb"


@pytest.fixture(scope="module")
def notebook():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    return nb


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_stored_without_outputs(notebook):
    dirty = [i for i, c in enumerate(_code(notebook)) if c.outputs or c.execution_count is not None]
    assert not dirty, f"code cells {dirty} of {NOTEBOOK} hold outputs: clear them before committing"


def test_first_code_cell_is_the_papermill_parameters_cell(notebook):
    first = _code(notebook)[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assigned = {t.id: ast.literal_eval(n.value) for n in ast.parse(first.source).body for t in n.targets}
    assert set(assigned) == {"home", "run"}, assigned
    assert assigned["run"] == "latest"
    assert len([c for c in _code(notebook) if "parameters" in c.metadata.get("tags", [])]) == 1


def test_reads_tfma_only_through_the_report_reader(notebook):
    source = "\n".join(c.source for c in _code(notebook))
    for cell in _code(notebook):
        ast.parse(cell.source)  # every cell is valid Python
    assert "from report.tfma_reader import" in source and "load_evaluation(" in source
    assert "from pipeline.report_inputs import find_run" in source and "find_run(home, run)" in source
    assert "plots.confusion_heatmap(" in source and "plots.slice_recall_plot(" in source
    # One reader of TFMA output: no second copy of the parsing in the notebook.
    assert "tensorflow_model_analysis" not in source and "tfma." not in source
    assert "HOME = " not in source
