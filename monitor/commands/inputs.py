"""Loading what several commands take: a profile folder, a config file, a model file.

Each turns a failure into a one-line :class:`~monitor.cli.CommandError`.
"""

from __future__ import annotations

from pathlib import Path

from monitor.cli import CommandError


def load_profile(path: Path):
    """The :class:`~monitor.Profile` in folder ``path``."""
    from monitor import Profile
    from monitor.errors import InvalidInput

    try:
        return Profile.load(path)
    except (InvalidInput, OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot load profile {path}: {exc}") from exc


def load_settings(path: Path | None):
    """Every table of config file ``path``, read once (defaults when no file is given)."""
    from monitor.settings import Settings, SettingsError

    try:
        return Settings.load(path)
    except (SettingsError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def load_model_file(path: Path | None, trust=(), profile=None):
    """The classifier in ``path`` (``None`` when no file is given), checked against ``profile``."""
    from monitor.model_io import ModelLoadError, load_model

    if path is None:
        return None
    try:
        model = load_model(path, trusted=trust)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
    if profile is not None and len(model.classes_) != len(profile.classes_):
        raise CommandError(f"--model has {len(model.classes_)} classes but the profile has "
                           f"{len(profile.classes_)}; use the model the profile was fit on")
    return model
