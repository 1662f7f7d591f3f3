"""Every `--help` states the defaults the parser really uses (issue 26: profile's help said
--drift-draws defaults to 50 while the parser and the profile used 20).

The defaults are read from where they are declared (the parser default, settings.py, the
class's own default), so these tests check that every option whose help names a default
agrees with its parser default, for every command, and that the declared sources agree."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest

from monitor.cli import available_commands, build_parser, main

DEFAULT = re.compile(r"\bdefault(?::\s*|\s+)(?=[\w'\"$\[.-])([^;,()\s]+)")
"""``default: X`` / ``default X`` in a help text; X is the stated default."""


def command_parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def stated_defaults(name: str):
    """``(option, parser default, stated default)`` for every option of ``name`` whose help
    names a default (help as `--help` prints it, ``%(default)s`` filled in)."""
    parser = command_parser(name)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.help or action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        match = DEFAULT.search(formatter._expand_help(action))
        if match:
            yield action.option_strings[0], action.default, match.group(1).strip("'\"")


def agrees(stated: str, default) -> bool:
    if isinstance(default, bool):
        return stated.lower() == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(stated) == float(default)
        except ValueError:
            return False
    return stated == str(default)


@pytest.mark.parametrize("command", sorted(available_commands()))
def test_every_stated_default_is_the_parser_default(command):
    checked = 0
    for option, default, stated in stated_defaults(command):
        if default is None or isinstance(default, list | tuple):
            continue  # the help says what "unset" means (e.g. "[store] uri, else ...")
        assert agrees(stated, default), \
            f"{command} {option}: help says default {stated!r}, the parser uses {default!r}"
        checked += 1
    if command in ("profile", "tune", "proxy", "analyze", "serve"):
        assert checked >= 2, f"{command}: expected options stating their defaults"


@pytest.mark.parametrize("command", sorted(available_commands()))
def test_the_description_states_no_other_default(command):
    """A command's description that names an option's default, "--opt (..., default X)",
    agrees with the parser too."""
    parser = command_parser(command)
    defaults = {s: a.default for a in parser._actions for s in a.option_strings}
    for option, inside in re.findall(r"(--[a-z-]+) \(([^)]*)\)", parser.description or ""):
        match = DEFAULT.search(inside)
        if match and defaults.get(option) is not None:
            assert agrees(match.group(1), defaults[option]), (command, option, inside)


def test_profile_defaults_are_the_profiles_own(capsys):
    """profile's calibration options default to Profile's parameters, and --help says so."""
    from monitor.profile import Profile

    own = {n: p.default for n, p in inspect.signature(Profile).parameters.items()}
    args = command_parser("profile").parse_args(["--model", "m", "--train", "t", "--out", "o"])
    assert (args.folds, args.drift_draws, args.reference_rows, args.seed) == \
        (own["n_folds"], own["drift_draws"], own["max_reference"], own["seed"])
    with pytest.raises(SystemExit) as done:
        main(["profile", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"for the drift model (default: {own['drift_draws']}; 0: none)" in text


def test_serving_help_names_the_declared_routes_and_timeout():
    """--route's help lists the [serving] default routes from settings.py, and proxy's
    --timeout is the worker options' own default."""
    from monitor.serving.launch import WorkerOptions
    from monitor.settings import DEFAULT_ROUTES, ServingConfig

    assert ServingConfig().routes == DEFAULT_ROUTES
    for command in ("proxy", "serve"):
        route = next(a for a in command_parser(command)._actions if "--route" in a.option_strings)
        assert all(r in route.help for r in DEFAULT_ROUTES), route.help
    timeout = next(a for a in command_parser("proxy")._actions if "--timeout" in a.option_strings)
    assert timeout.default == WorkerOptions.model_fields["timeout"].default


@pytest.mark.parametrize("command", ["proxy", "serve"])
def test_serving_help_names_the_identity_header(command, capsys):
    """issue 26: a new user learns from --help who a client is: the X-API-Key header (the
    [serving] client_header default), else the peer address."""
    from monitor.settings import ServingConfig

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "X-API-Key header" in text
    assert f"identified by the {ServingConfig().client_header} header" in text


@pytest.mark.parametrize("command", ["profile", "analyze", "tune", "report", "proxy"])
def test_trust_help_says_tree_models_need_it(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust TYPE" in text and "tree models need it" in text
    assert "sklearn.tree._tree.Tree" in text
