"""Run a monitored app under uvicorn with one or many worker processes sharing one state store.

The parent process (the ``serve`` / ``proxy`` commands) settles everything once — the state
store URI, the client-id salt, a profile saved to a folder — and passes it to every worker
as JSON in ``EXTRACTION_MONITOR_APP``; uvicorn builds the app in each worker with the import
string factories :func:`victim_app_from_env` or :func:`proxy_app_from_env`. Workers load the
saved profile (no pickle, no refitting), so starting many workers costs little more than one.

**Salt.** Client ids are salted hashes of API keys / addresses; every worker, and every
restart, must use the same salt or a client's state is lost. The salt is, in order: the
``[serving] salt`` of ``--config``; ``$EXTRACTION_MONITOR_SALT``; for SQLite, the file
``<db>.salt`` beside the database (created with mode 0600 on first start); for ``memory://``
a fresh random salt. ``redis://`` needs one of the first two (hosts share no file system).

>>> resolve_salt("memory://", configured="s3cret")
's3cret'
>>> len(resolve_salt("memory://", environ={}))
32
>>> resolve_salt("redis://127.0.0.1:6379/0", environ={})
Traceback (most recent call last):
...
ValueError: a redis:// state store needs a salt shared by every host: set EXTRACTION_MONITOR_SALT or [serving] salt
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.serving.config import SALT_ENV

OPTIONS_ENV = "EXTRACTION_MONITOR_APP"
"""Environment variable carrying the worker options (JSON) from the parent to the workers."""
VICTIM_FACTORY = "monitor.serving.launch:victim_app_from_env"
PROXY_FACTORY = "monitor.serving.launch:proxy_app_from_env"
WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker's health-check answer before replacing it
(uvicorn's default of 5 s restarts workers in a loop while they import on a loaded host)."""


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/extraction-monitor`` (default ``~/.local/share/extraction-monitor``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "extraction-monitor"


def default_state_uri(environ: Mapping[str, str] | None = None) -> str:
    """The embedded default store, ``sqlite:///<data dir>/state.db`` (folder created, 0700)."""
    folder = data_dir(environ)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite://{(folder / 'state.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database path of a ``sqlite:///`` URI, else ``None``."""
    parts = urlsplit(uri)
    return Path(parts.path) if parts.scheme.lower() == "sqlite" and parts.path else None


def resolve_salt(state_uri: str, configured: str | None = None,
                 environ: Mapping[str, str] | None = None) -> str:
    """The client-id salt for a deployment on ``state_uri`` (see the module docstring)."""
    env = os.environ if environ is None else environ
    if configured:
        return configured
    if env.get(SALT_ENV):
        return env[SALT_ENV]
    scheme = urlsplit(state_uri).scheme.lower()
    if scheme in ("redis", "rediss"):
        raise ValueError(f"a redis:// state store needs a salt shared by every host: "
                         f"set {SALT_ENV} or [serving] salt")
    db = sqlite_path(state_uri)
    if db is None:
        return secrets.token_hex(16)
    return persistent_salt(db.with_name(db.name + ".salt"))


def persistent_salt(path: Path) -> str:
    """The salt stored in ``path``, created (mode 0600) with a random salt if missing."""
    path = Path(path)
    salt = secrets.token_hex(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(salt + "\n")
        return salt
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"salt file {path} is empty; delete it (client ids will change) or "
                         f"set {SALT_ENV}")
    return text


def check_state(state_uri: str, workers: int) -> None:
    """Open the store once (creating a SQLite database) to fail early with a clear message."""
    from monitor.stores import open_store

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and urlsplit(state_uri).scheme.lower() == "memory":
        raise ValueError("memory:// keeps state inside one process; with --workers > 1 use "
                         "sqlite:///path.db or redis://host:port/db")
    open_store(state_uri).close()


# --------------------------------------------------------------------------- in the workers
def _options() -> dict[str, Any]:
    raw = os.environ.get(OPTIONS_ENV)
    if not raw:
        raise RuntimeError(f"{OPTIONS_ENV} is not set: start workers with "
                           "`extraction-monitor serve` or `extraction-monitor proxy`")
    return json.loads(raw)


def _configs(options: dict[str, Any]):
    from monitor import MonitorConfig
    from monitor.serving.config import ServingConfig

    path = options.get("config")
    monitor_config = MonitorConfig.load(path) if path else None
    serving_config = ServingConfig.load(path) if path else ServingConfig(salt=options["salt"])
    return monitor_config, dataclasses.replace(serving_config, salt=options["salt"])


def _monitor(options: dict[str, Any], monitor_config, model):
    from monitor import Monitor, Profile
    from monitor.stores import open_store

    profile = Profile.load(options["profile"])
    return Monitor(profile, monitor_config, model=model, store=open_store(options["state"]))


def victim_app_from_env():
    """The monitored reference victim app of ``serve`` (a uvicorn factory)."""
    from monitor.serving.app import build_victim_app
    from victims import load_victim

    options = _options()
    monitor_config, serving_config = _configs(options)
    victim = load_victim(options["victim"], output_mode=options["output_mode"],
                         seed=options["seed"])
    monitor = None
    if options.get("profile"):
        monitor = _monitor(options, monitor_config, victim.model)
    return build_victim_app(victim, monitor, serving_config, admin_token=options["admin_token"])


def proxy_app_from_env():
    """The monitored reverse proxy of ``proxy`` (a uvicorn factory)."""
    from monitor.model_io import load_model
    from monitor.serving.proxy import build_proxy_app

    options = _options()
    monitor_config, serving_config = _configs(options)
    model = load_model(options["model"], trusted=options["trust"]) if options.get("model") \
        else None
    monitor = _monitor(options, monitor_config, model)
    return build_proxy_app(options["upstream"], monitor, serving_config, options["admin_token"],
                           options["timeout"])


# --------------------------------------------------------------------------- in the parent
@contextlib.contextmanager
def worker_environment(options: dict[str, Any], workers: int):
    """Set :data:`OPTIONS_ENV` (and a fresh ``PROMETHEUS_MULTIPROC_DIR`` for several workers)
    for the duration of the block; restore the environment afterwards."""
    from monitor.serving.metrics import MULTIPROC_ENV

    saved = {key: os.environ.get(key) for key in (OPTIONS_ENV, MULTIPROC_ENV)}
    metrics_dir = None
    try:
        os.environ[OPTIONS_ENV] = json.dumps(options)
        if workers > 1 and not os.environ.get(MULTIPROC_ENV):
            metrics_dir = tempfile.mkdtemp(prefix="extraction-monitor-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def run_workers(factory: str, options: dict[str, Any], host: str, port: int, workers: int,
                log_level: str) -> None:
    """``uvicorn.run(factory, factory=True, workers=workers)`` with ``options`` for the workers."""
    import inspect

    import uvicorn

    extra = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # a worker still importing its app (slow on a busy host) must not count as hung
        extra["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    with worker_environment(options, workers):
        uvicorn.run(factory, factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, **extra)


__all__ = ["OPTIONS_ENV", "PROXY_FACTORY", "VICTIM_FACTORY", "check_state", "data_dir",
           "default_state_uri", "persistent_salt", "proxy_app_from_env", "resolve_salt",
           "run_workers", "victim_app_from_env", "worker_environment"]
