"""The product stands without its test range: no product module, and no product command,
imports the reference victims (``victims``) or the attack suite (``attacks``), or even names
one of their modules.

Checked several ways: each import in a fresh interpreter (what a user's process loads); an AST
walk over the product's source (so a lazy import inside a function cannot slip in either);
a scan of every product file's strings and comments for module references such as an
import string ``"victims.app:factory"`` (which uvicorn or ``importlib`` would import behind the
AST walk's back); and the command registry: the product's commands are its own modules, and
the test range's commands (``demo``, ``bench``, ``serve --victim``) come only through the
``extraction_monitor.commands`` entry points in pyproject.toml.
"""

from __future__ import annotations

import ast
import io
import json
import pkgutil
import re
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest

import monitor
from monitor.cli import ENTRY_POINT_GROUP, PRODUCT_COMMANDS, available_commands

TEST_RANGE = ("victims", "attacks")
ROOT = Path(monitor.__file__).parent
PYPROJECT = ROOT.parent / "pyproject.toml"
MODULE_REFERENCE = re.compile(
    r"\bfrom\s+(?:victims|attacks)(?:\.\w+)*\s+import\b"  # from victims.app import x
    r"|\bimport\s+(?:victims|attacks)\b"                   # import attacks
    r"|\b(?:victims|attacks)(?:\.[A-Za-z_]\w*)+"            # victims.app, attacks.bench
    r"|\b(?:victims|attacks):[A-Za-z_]")                     # victims:factory
"""A test-range module named in text. Prose may say "reference victims" or "the attacks";
it may not name a module, least of all as an import string."""
IMPORTING_CALLS = {"import_module", "__import__", "find_spec", "run_module", "import_string"}
KNOWN_REFERENCES: set[tuple[str, str]] = set()
"""(file, text) of references to the test range still to remove; empty, and nothing may
join it."""


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
            if hits:
                offenders.append(f"{rel}:{node.lineno} imports {', '.join(hits)}")
    assert offenders == []


def _texts(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of a product file's prose and data: every string constant (docstrings,
    f-string parts) and comment of a ``.py`` file, the whole of any other text file."""
    source = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return [(1, source)]
    texts = [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    texts += [(tok.start[0], tok.string)
              for tok in tokenize.generate_tokens(io.StringIO(source).readline)
              if tok.type == tokenize.COMMENT]
    return texts


def _product_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def test_no_product_file_names_a_test_range_module():
    offenders = []
    for path in _product_files():
        rel = path.relative_to(ROOT.parent).as_posix()
        for line, text in _texts(path):
            for match in MODULE_REFERENCE.finditer(text):
                context = text[text.rfind("\n", 0, match.start()) + 1:].split("\n")[0].strip()
                if not any(rel == f and known in context for f, known in KNOWN_REFERENCES):
                    at = line + text.count("\n", 0, match.start())
                    offenders.append(f"{rel}:{at} names {match.group(0)!r}: {context[:80]}")
    assert offenders == []


def test_no_product_source_imports_the_test_range_by_name():
    """``importlib.import_module("victims")`` and the like, whatever the string looks like."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (name in IMPORTING_CALLS and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and re.split(r"[.:]", arg.value)[0] in TEST_RANGE):
                offenders.append(f"{rel}:{node.lineno} {name}({arg.value!r})")
    assert offenders == []


def test_the_scans_catch_what_they_are_for(tmp_path):
    """The checks above would see each kind of reference (and pass plain prose)."""
    caught = ['FACTORY = "victims.app:victim_app_from_env"', '"""from victims import VICTIMS"""',
              "# import attacks", 'x = "attacks.commands.demo"', 'f"{n} victims:app"']
    for code in caught:
        (tmp_path / "m.py").write_text(code + "\n")
        assert any(MODULE_REFERENCE.search(t) for _, t in _texts(tmp_path / "m.py")), code
    prose = ['"""Serve a reference victim; the attacks of the test range (see victims/)."""',
             "attacks = {}\nattacks.get('overall')\nif benign and attacks:\n    pass"]
    for code in prose:
        (tmp_path / "m.py").write_text(code + "\n")
        assert not any(MODULE_REFERENCE.search(t) for _, t in _texts(tmp_path / "m.py")), code


def _test_range_commands() -> dict[str, str]:
    """name -> module of the commands pyproject.toml registers from the test range."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    group = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return {name: module for name, module in group.items()
            if module.split(".")[0] in TEST_RANGE}


def test_the_product_registry_holds_only_product_commands():
    test_range = _test_range_commands()
    assert {"demo", "bench", "serve"} <= set(test_range)
    assert not set(PRODUCT_COMMANDS) & set(test_range)
    for name, module in PRODUCT_COMMANDS.items():
        assert module == f"monitor.commands.{name}", (name, module)
        assert (ROOT / "commands" / f"{name}.py").is_file(), name
    cli = ROOT / "cli.py"
    tree = ast.parse(cli.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    named = sorted({node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and id(node) not in docstrings
                    and node.value in test_range})
    assert named == [], f"monitor/cli.py hard-codes test-range commands {named}"


def test_the_test_range_commands_come_through_the_entry_points():
    """Installed as pyproject.toml says (after editing it: pip install -e . again)."""
    commands = available_commands()
    for name, module in _test_range_commands().items():
        assert commands.get(name) == module, (name, commands.get(name), module)


def test_the_issue_acceptance_command():
    code = ("import monitor, sys; assert not any(m.split('.')[0] in ('victims','attacks') "
            "for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
