"""Every notebook in notebooks/ runs top to bottom in a fresh kernel (nbclient).

The notebooks run concurrently (one kernel each) in a module fixture; each then gets its own
test result, naming the failing cell.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_OUTPUT_CHARS = 20_000
"""Committed notebooks must stay small: no big outputs."""
TIMEOUT = 120
"""Seconds allowed per cell."""


async def _run_all(paths, workdir: Path) -> dict[str, BaseException | None]:
    async def run(path: Path):
        nb = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(ROOT)}})
        try:
            await client.async_execute()
        except Exception as exc:  # reported by the notebook's own test
            return exc
        errors = [o for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        return AssertionError(f"{path.name}: error outputs {errors}") if errors else None

    results = await asyncio.gather(*(run(p) for p in paths))
    return {p.name: r for p, r in zip(paths, results, strict=True)}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    committed = {p.name: p.read_text() for p in NOTEBOOKS}
    results = asyncio.run(_run_all(NOTEBOOKS, tmp_path_factory.mktemp("nb")))
    changed = [p.name for p in NOTEBOOKS if p.read_text() != committed[p.name]]
    return results, changed


def test_the_five_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_big_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert sum(len(str(c.get("outputs", ""))) for c in nb.cells) < MAX_OUTPUT_CHARS, \
        f"{path.name}: clear its outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(executed, path):
    results, changed = executed
    if results[path.name] is not None:
        raise results[path.name]
    assert path.name not in changed, "executing must not rewrite the committed notebook"
