"""Every notebook in notebooks/ is committed with its outputs (plots inline), and runs top to
bottom in a fresh kernel (nbclient) producing those outputs again: every code cell that shows
something in the committed notebook shows the same kinds of output (text, tables, PNG plots)
when executed, and no cell errors.

The notebooks run concurrently (one kernel each) in a module fixture; each then gets its own
test result, naming the failing cell. Refresh the committed outputs with `make notebooks`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_NOTEBOOK_BYTES = 400_000
"""Committed notebooks stay small: plots as modest PNGs, no embedded reports."""
TIMEOUT = 180
"""Seconds allowed per cell."""
WITH_PLOTS = {"01", "02", "03", "04", "06"}


def _kinds(cell) -> set[str]:
    """The kinds of output a code cell shows: stream, the mime types of rich outputs."""
    kinds = set()
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            kinds.add("stream")
        elif "data" in out:
            kinds.update(k for k in out["data"] if k in ("text/plain", "text/html",
                                                         "image/png"))
    return kinds


async def _run_all(paths) -> dict[str, tuple]:
    async def run(path: Path):
        nb = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(ROOT)}})
        try:
            await client.async_execute()
        except Exception as exc:  # reported by the notebook's own test
            return exc, nb
        return None, nb

    results = await asyncio.gather(*(run(p) for p in paths))
    return {p.name: r for p, r in zip(paths, results, strict=True)}


@pytest.fixture(scope="module")
def executed():
    committed = {p.name: p.read_bytes() for p in NOTEBOOKS}
    results = asyncio.run(_run_all(NOTEBOOKS))
    changed = [p.name for p in NOTEBOOKS if p.read_bytes() != committed[p.name]]
    return results, changed


def test_the_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_with_its_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), \
        f"{path.name}: commit it executed (make notebooks)"
    assert sum(bool(c.get("outputs")) for c in code) >= len(code) // 2
    errors = [c for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"
    if path.stem[:2] in WITH_PLOTS:
        assert any("image/png" in _kinds(c) for c in code), f"{path.name}: no inline plot"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name}: outputs too big"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_produces_its_outputs(executed, path):
    results, changed = executed
    error, nb = results[path.name]
    if error is not None:
        raise error
    assert path.name not in changed, "executing must not rewrite the committed notebook"
    committed = nbformat.read(path, as_version=4)
    pairs = [(c, e) for c, e in zip(committed.cells, nb.cells, strict=True)
             if c.cell_type == "code"]
    for i, (before, after) in enumerate(pairs):
        assert not [o for o in after.get("outputs", []) if o.get("output_type") == "error"]
        missing = _kinds(before) - _kinds(after)
        assert not missing, f"{path.name} code cell {i}: no {sorted(missing)} output now"
