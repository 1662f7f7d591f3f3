"""Run a monitored app under uvicorn with one or many worker processes sharing one state store.

The parent process (the ``proxy`` command, or a serving command that another package
registers through the ``extraction_monitor.commands`` entry-point group) settles everything
once — the config file read into :class:`~monitor.settings.Settings`, the state store URI, the
client-id salt, a profile saved to a folder — and passes it to every worker as
:class:`WorkerOptions` (JSON in ``EXTRACTION_MONITOR_APP``); uvicorn builds the app in each
worker with the import-string factory the command passes to :func:`run_workers` (the proxy's
is :data:`PROXY_FACTORY`; the product names no other). Workers load the saved profile (no
pickle, no refitting) and never read the config file again, so starting many workers costs
little more than one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitor.environment import MULTIPROC_ENV, OPTIONS_ENV, Environment, deployment_state_uri
from monitor.serving.identity import resolve_salt
from monitor.settings import Settings

PROXY_FACTORY = "monitor.serving.launch:proxy_app_from_env"
"""The worker factory of ``proxy``."""
WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker's health-check answer before replacing it
(uvicorn's default of 5 s restarts workers in a loop while they import on a loaded host)."""


class WorkerOptions(BaseModel):
    """Everything a worker needs, decided once by the parent.

    >>> options = WorkerOptions(settings=Settings().to_dict(), salt="s")
    >>> WorkerOptions.model_validate_json(options.model_dump_json()) == options
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    settings: dict[str, Any]
    """:meth:`Settings.to_dict` with the store URI resolved."""
    salt: str
    admin_token: str | None = None
    profile: str | None = None
    """Profile folder (``None``: an unmonitored app)."""
    model: str | None = None
    trust: tuple[str, ...] = ()
    upstream: str | None = None
    timeout: float = 30.0
    factory_options: dict[str, Any] | None = None
    """Options for the factory of a command registered by another package, passed through
    untouched (the test range's reference victim: its name, output mode and seed)."""
    threads: int = Field(default=1, ge=1)
    """BLAS/OpenMP threads in each worker (:mod:`monitor.threads`): requests already run
    in parallel threads, so one each is fastest."""

    def resolved_settings(self) -> Settings:
        """The settings, with the salt put back into ``[serving]``."""
        settings = Settings.from_dict(self.settings)
        return settings.model_copy(update={"serving": settings.serving.replace(salt=self.salt)})


def resolve_deployment(settings: Settings, state: str | None, workers: int,
                       env: Environment | None = None, deployment: str | None = None
                       ) -> tuple[Settings, str]:
    """``(settings with the store URI decided, salt)``; fails early with a clear message.

    ``state`` (``--state``) overrides ``[store] uri``; with neither, the embedded SQLite
    default of ``deployment`` (:func:`monitor.environment.deployment_state_uri`: one
    database per deployment; ``None``: the one shared default). The store is opened once
    (creating a SQLite database) to check it.
    """
    from monitor.settings import StoreConfig
    from monitor.stores import open_store

    env = env or Environment.read()
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    store = settings.store
    if state is not None:
        store = StoreConfig.from_uri(state, **store.model_dump(exclude={"uri"}))
    elif store.uri is None:
        store = store.replace(uri=deployment_state_uri(deployment, env))
    if workers > 1 and store.scheme == "memory":
        raise ValueError("memory:// keeps state inside one process; with --workers > 1 use "
                         "sqlite:///path.db or redis://host:port/db")
    open_store(store).close()
    salt = resolve_salt(store.uri, settings.serving.salt, env)
    return settings.model_copy(update={"store": store}), salt


def check_state(state_uri: str, workers: int) -> None:
    """Open the store at ``state_uri`` once to fail early with a clear message."""
    resolve_deployment(Settings(), state_uri, workers)


# --------------------------------------------------------------------------- in the workers
def worker_options(env: Environment | None = None) -> WorkerOptions:
    """The options the parent passed to this worker."""
    env = env or Environment.read()
    if not env.worker_options:
        raise RuntimeError(f"{OPTIONS_ENV} is not set: start workers with "
                           "`extraction-monitor proxy` (or another serving command)")
    return WorkerOptions.model_validate_json(env.worker_options)


def worker_monitor(options: WorkerOptions, settings: Settings, model=None):
    """The worker's :class:`~monitor.Monitor` on the shared store."""
    from monitor import Monitor, Profile
    from monitor.stores import open_store
    from monitor.threads import set_process_threads

    set_process_threads(options.threads)
    profile = Profile.load(options.profile)
    return Monitor(profile, settings.monitor, model=model, store=open_store(settings.store))


def proxy_app_from_env():
    """The monitored reverse proxy of ``proxy`` (a uvicorn factory)."""
    from monitor.model_io import load_model
    from monitor.serving.proxy import build_proxy_app

    options = worker_options()
    settings = options.resolved_settings()
    model = load_model(options.model, trusted=list(options.trust)) if options.model else None
    monitor = worker_monitor(options, settings, model)
    return build_proxy_app(options.upstream, monitor, settings.serving, options.admin_token,
                           options.timeout)


# --------------------------------------------------------------------------- in the parent
@contextlib.contextmanager
def worker_environment(options: WorkerOptions, workers: int):
    """Set :data:`~monitor.environment.OPTIONS_ENV` (and a fresh ``PROMETHEUS_MULTIPROC_DIR``
    for several workers) for the duration of the block; restore the environment afterwards."""
    saved = {key: os.environ.get(key) for key in (OPTIONS_ENV, MULTIPROC_ENV)}
    metrics_dir = None
    try:
        os.environ[OPTIONS_ENV] = options.model_dump_json()
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


def run_workers(factory: str, options: WorkerOptions, host: str, port: int, workers: int,
                log_level: str, log_format: str = "text") -> None:
    """``uvicorn.run(factory, factory=True, workers=workers)`` with ``options`` for the workers.

    ``factory`` is the import string (``"package.module:function"``) of the function that
    builds the app in each worker from :func:`worker_options`, e.g. :data:`PROXY_FACTORY`.

    uvicorn rewrites the peer address from ``X-Forwarded-For`` only for the configured
    ``[serving] trusted_proxies`` (never by default). Every worker logs in ``log_format``
    (:func:`monitor.eventlog.uvicorn_log_config`), uvicorn's own records included."""
    import inspect

    import uvicorn

    from monitor.eventlog import uvicorn_log_config
    from monitor.serving.background import proxy_header_options

    trusted = options.resolved_settings().serving.trusted_proxies
    extra = proxy_header_options(trusted)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # a worker still importing its app (slow on a busy host) must not count as hung
        extra["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    with worker_environment(options, workers):
        uvicorn.run(factory, factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, log_config=uvicorn_log_config(log_format, log_level),
                    **extra)


__all__ = ["OPTIONS_ENV", "PROXY_FACTORY", "WorkerOptions", "check_state",
           "proxy_app_from_env", "resolve_deployment", "run_workers", "worker_environment",
           "worker_monitor", "worker_options"]
