"""The one module that reads the process environment.

Every environment variable the product honours is named here and read by
:meth:`Environment.read`; other modules receive the values, never ``os.environ``.

* ``EXTRACTION_MONITOR_SALT`` — salt of client-id hashes shared by every host;
* ``EXTRACTION_MONITOR_ADMIN_TOKEN`` — the admin API's bearer token;
* ``EXTRACTION_MONITOR_APP`` — worker options passed from ``serve``/``proxy`` to uvicorn workers;
* ``PROMETHEUS_MULTIPROC_DIR`` — prometheus_client's multiprocess folder (several workers);
* ``XDG_DATA_HOME`` — where the default state database lives.

>>> env = Environment.read({"EXTRACTION_MONITOR_SALT": "s", "XDG_DATA_HOME": "/data"})
>>> env.salt, env.admin_token, str(data_dir(env))
('s', None, '/data/extraction-monitor')
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SALT_ENV = "EXTRACTION_MONITOR_SALT"
ADMIN_TOKEN_ENV = "EXTRACTION_MONITOR_ADMIN_TOKEN"
OPTIONS_ENV = "EXTRACTION_MONITOR_APP"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DATA_HOME_ENV = "XDG_DATA_HOME"


@dataclass(frozen=True)
class Environment:
    """The environment variables the product honours (``None`` when unset or empty)."""

    salt: str | None = None
    admin_token: str | None = None
    worker_options: str | None = None
    metrics_dir: str | None = None
    data_home: str | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The values of ``environ`` (default: this process's environment)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        return cls(salt=get(SALT_ENV), admin_token=get(ADMIN_TOKEN_ENV),
                   worker_options=get(OPTIONS_ENV), metrics_dir=get(MULTIPROC_ENV),
                   data_home=get(DATA_HOME_ENV))


def as_environment(env: Environment | Mapping[str, str] | None) -> Environment:
    """``env`` itself, the variables of a mapping, or this process's environment."""
    return env if isinstance(env, Environment) else Environment.read(env)


def data_dir(env: Environment | Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/extraction-monitor`` (default ``~/.local/share/extraction-monitor``)."""
    env = as_environment(env)
    base = env.data_home or str(Path.home() / ".local" / "share")
    return Path(base) / "extraction-monitor"


def default_state_uri(env: Environment | Mapping[str, str] | None = None) -> str:
    """The embedded default store, ``sqlite:///<data dir>/state.db`` (folder created, 0700)."""
    folder = data_dir(env)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite://{(folder / 'state.db').resolve()}"


def deployment_state_uri(deployment: str | None,
                         env: Environment | Mapping[str, str] | None = None) -> str:
    """The embedded default store of one deployment: ``sqlite:///<data dir>/deployments/
    <hash>.db``, the hash of ``deployment`` (a string naming what is served, e.g.
    :func:`profile_deployment`), so two deployments on one machine never share clients (nor
    the salt file beside the database). A ``<hash>.txt`` beside it names the deployment.
    ``None``: the one shared :func:`default_state_uri`.

    >>> import tempfile
    >>> env = {"XDG_DATA_HOME": tempfile.mkdtemp()}
    >>> a, b = deployment_state_uri("profile:/a", env), deployment_state_uri("profile:/b", env)
    >>> a != b and a == deployment_state_uri("profile:/a", env), a.endswith(".db")
    (True, True)
    """
    if deployment is None:
        return default_state_uri(env)
    folder = data_dir(env) / "deployments"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(deployment.encode("utf-8")).hexdigest()[:16]
    note = folder / f"{name}.txt"
    if not note.exists():
        note.write_text(deployment + "\n", encoding="utf-8")
    return f"sqlite://{(folder / f'{name}.db').resolve()}"


def profile_deployment(profile: str | Path) -> str:
    """The deployment string of a monitor run on the profile folder ``profile`` (what
    ``proxy --profile`` and ``admin lookup --profile`` hash for the default store).

    >>> profile_deployment("/srv/profile")
    'profile:/srv/profile'
    """
    return f"profile:{Path(profile).resolve()}"


__all__ = ["ADMIN_TOKEN_ENV", "DATA_HOME_ENV", "MULTIPROC_ENV", "OPTIONS_ENV", "SALT_ENV",
           "Environment", "as_environment", "data_dir", "default_state_uri",
           "deployment_state_uri", "profile_deployment"]
