"""The product stands without its test range: no product module, and no product command,
imports the reference victims (``victims``) or the attack suite (``attacks``).

Checked two ways: each import in a fresh interpreter (what a user's process loads), and an AST
walk over the product's source (so a lazy import inside a function cannot slip in either; the
one allowed place is ``serve --victim``, which loads a reference victim on purpose).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import monitor
from monitor.cli import PRODUCT_COMMANDS

TEST_RANGE = ("victims", "attacks")
ROOT = Path(monitor.__file__).parent
LAZY_TEST_RANGE_IMPORTS = {"monitor/commands/serve.py"}
"""Product files allowed to import the test range inside a function (reference victims on
purpose: ``serve --victim``)."""


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             f"{TEST_RANGE!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def product_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="monitor."))


def test_importing_monitor_loads_no_test_range():
    assert _loaded_after("import monitor") == []


def test_importing_every_product_module_loads_no_test_range():
    modules = product_modules()
    imports = "\n".join(f"import {m}" for m in modules)
    assert _loaded_after(imports) == []


@pytest.mark.parametrize("command", list(PRODUCT_COMMANDS))
def test_each_product_command_loads_no_test_range(command):
    code = (f"from monitor.cli import build_parser\n"
            f"build_parser([{command!r}]).parse_args([{command!r}, '--help'])")
    code = f"try:\n    {code.replace(chr(10), chr(10) + '    ')}\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def test_no_product_source_imports_the_test_range():
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            hits = [n for n in names if n.split(".")[0] in TEST_RANGE]
            lazy = getattr(node, "col_offset", 0) > 0
            if hits and not (lazy and rel in LAZY_TEST_RANGE_IMPORTS):
                offenders.append(f"{rel}:{node.lineno} imports {', '.join(hits)}")
    assert offenders == []


def test_the_issue_acceptance_command():
    code = ("import monitor, sys; assert not any(m.split('.')[0] in ('victims','attacks') "
            "for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
