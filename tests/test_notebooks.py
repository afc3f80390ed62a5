"""The analyst notebooks are stored without outputs, for the python3 kernel.

`make test` executes them with nbmake (`pytest --nbmake notebooks`); this checks how they are kept
in git: no outputs, no execution counts or timings, a valid notebook for the `python3` kernel.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_analyst_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"retrain.ipynb", "explore.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    kept = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and (cell.outputs or cell.execution_count is not None or "execution" in cell.metadata)
    ]
    assert not kept, (
        f"{path.name}: cells {kept} keep outputs or execution data; clear them before committing "
        "(see notebooks/README.md)"
    )
