"""Execute notebooks in place so they are committed with their outputs.

    python notebooks/execute.py              # every notebook
    python notebooks/execute.py 03 06        # those whose name starts with 03 or 06

Run from the repository root with the project's environment (make notebooks does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path) -> None:
    """Run ``path`` top to bottom in a fresh kernel and write it back with its outputs."""
    nb = nbformat.read(path, as_version=4)
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    for i, cell in enumerate(nb.cells):
        cell.get("metadata", {}).pop("execution", None)
        cell["id"] = f"cell-{i:02d}"  # stable ids: diffs show real changes only
    nbformat.write(nb, path)


if __name__ == "__main__":
    prefixes = sys.argv[1:]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if not prefixes or any(path.name.startswith(p) for p in prefixes):
            print(f"executing {path.name}", flush=True)
            execute(path)
