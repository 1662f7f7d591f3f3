"""Every setting of the product, declared once: types, ranges and the unknown-key error.

A config file (TOML, or JSON with the same tables) has up to four tables:

* ``[monitor]`` — :class:`MonitorConfig`, the detection settings;
* ``[serving]`` — :class:`ServingConfig`, identity, routes, actions and limits of the HTTP layer;
* ``[store]``   — :class:`StoreConfig`, where per-client state lives;
* ``[tuning]``  — provenance written by ``extraction-monitor tune`` (kept as it is).

:class:`Settings` reads the whole file once; the models are frozen pydantic models with
``extra="forbid"``, so a misspelt table or key, or a value of the wrong type, is a one-line
:class:`SettingsError` that names what is known or expected.

>>> MonitorConfig(alpha=0.001).alpha
0.001
>>> MonitorConfig.from_dict({"alpah": 0.1})
Traceback (most recent call last):
...
monitor.settings.SettingsError: unknown monitor config key(s): alpah; known keys: alpha, decoded_states, ...
>>> MonitorConfig.from_dict({"alpha": "0.1"})
Traceback (most recent call last):
...
monitor.settings.SettingsError: invalid monitor config: alpha must be a number, got '0.1'
>>> Settings.from_dict({"monitr": {}})
Traceback (most recent call last):
...
monitor.settings.SettingsError: unknown config table(s) [monitr]; known tables: [monitor], [serving], [store], [tuning]
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args
from urllib.parse import parse_qsl, urlsplit

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class SettingsError(ValueError):
    """A setting that cannot be used; the one-line message says which and why."""


# ----------------------------------------------------------------------------- value types
def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"must be a whole number, got {value!r}")
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _names(value: Any) -> Any:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of strings, got {value!r}")
    for item in value:
        _text(item)
    return tuple(value)


Real = Annotated[float, BeforeValidator(_number)]
Whole = Annotated[int, BeforeValidator(_whole)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _one_line(exc: ValidationError, label: str, known: list[str]) -> SettingsError:
    """A pydantic error as one line: unknown keys with the known ones, else the first problem."""
    unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    if unknown:
        return SettingsError(f"unknown {label} key(s): {', '.join(sorted(unknown))}; "
                             f"known keys: {', '.join(sorted(known))}")
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        what = f"must be {_BOUNDS[kind]} {bound}, got {error['input']!r}"
    elif kind == "literal_error":
        what = f"must be {ctx.get('expected', '')}, got {error['input']!r}"
    elif kind == "missing":
        what = "is required"
    else:
        what = str(error["msg"]).removeprefix("Value error, ")
        if kind.endswith("_type") or kind.endswith("_parsing"):
            what = f"must be {kind.split('_')[0]}, got {error['input']!r}"
    return SettingsError(f"invalid {label}: {where} {what}" if where else f"invalid {label}: {what}")


class _Section(BaseModel):
    """A frozen settings table: validated on construction, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    label: ClassVar[str] = "config"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _one_line(exc, self.label, list(type(self).model_fields)) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Self:
        """Build from a table read from a file; ``SettingsError`` on any bad key or value."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise SettingsError(f"{cls.label} must be a table, got {data!r}")
        return cls(**data)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """A TOML/JSON-ready dict (``None`` values left out: TOML has no null)."""
        return self.model_dump(mode="json", exclude_none=True)


# ----------------------------------------------------------------------------- [monitor]
DEFAULT_DETECTORS = ("density", "local_density", "boundary", "chain", "label_change", "block")
"""The detectors on by default (:mod:`monitor.detectors` lists them all)."""

REMOVED_MONITOR_KEYS = ("extreme_level", "tolerated_rate", "broad_level",
                        "broad_tolerated_rate", "chain_memory", "window", "broad_window")
"""[monitor] keys of 0.1 (count tests with tolerated rates) that 0.2 rejects by name."""


class MonitorConfig(_Section):
    """Settings of a :class:`~monitor.Monitor`.

    Each detector runs one window test per size in ``windows`` over the client's last
    evidence units (distinct queries with near-duplicates and one-feature variants merged,
    :mod:`monitor.units`). Each sums the units' truncated evidence ``min(-ln p, -ln 1e-6)``
    for p <= ``truncation``.
    The false-alarm guarantee: a benign client whose units' p-values are independent draws
    from any member of the profile's benign null (uniform, drifted, one class, a sorted slice)
    is flagged with probability at most ``alpha`` over its first ``horizon`` units.

    >>> MonitorConfig(detectors=["density"]).detectors
    ('density',)
    >>> MonitorConfig(extreme_level=0.01)
    Traceback (most recent call last):
    ...
    monitor.settings.SettingsError: invalid monitor config: extreme_level was removed in 0.2: window tests are truncated products over evidence units now (set their sizes with windows = [8, 32, 128]); remove it
    """

    label: ClassVar[str] = "monitor config"

    alpha: Real = Field(0.01, gt=0, lt=1)
    """Target probability that a benign client is ever flagged within ``horizon`` units."""
    horizon: Whole = Field(10_000, ge=1)
    """Number of evidence units (distinct queries) the ``alpha`` guarantee covers."""
    windows: tuple[Whole, ...] = (8, 32, 128)
    """Window tests of every detector: the last ``w`` evidence units for each ``w`` — a short
    one for blatant traffic, longer ones for traffic that is only moderately unusual but
    persistently so (or hidden among benign cover queries)."""
    truncation: Real = Field(0.1, gt=0, le=1)
    """A unit carries evidence when its p-value is at most this."""
    detectors: Names = DEFAULT_DETECTORS
    """Detectors combined into the overall score."""
    units: Flag = True
    """Merge near-duplicates and one-feature variants into evidence units (off: every
    distinct query is its own unit, as for independent benign queries)."""
    dedup_memory: Whole = Field(256, ge=0)
    """Recent row hashes kept per client to recognise exact retries."""
    history: Whole = Field(64, ge=1)
    """Recent overall scores kept per client (for timelines and the admin API)."""
    score_threshold: Real | None = Field(None, gt=0)
    """Overall score at which a client is flagged; ``None`` means ``-log10(alpha)``.
    Set by ``extraction-monitor tune`` from an operator's own benign logs."""
    exposure: Flag = True
    """Track each client's exposure: the fidelity a 1-NN copy of its answers reaches on the
    profile's reference subset (:mod:`monitor.exposure`)."""
    exposure_limit: Real | None = Field(None, gt=0, le=1)
    """Exposure at which a client is marked (``Verdict.exposure_exceeded``) and the
    ``[serving] exposure_actions`` apply; ``None`` (default): never."""
    prada: Flag = False
    """Also run the PRADA baseline (Juuti et al. 2019); its state grows with history."""
    prada_delta: Real = Field(0.95, gt=0, lt=1)
    """PRADA alarm threshold on the Shapiro-Wilk W statistic."""
    prada_max_stored: Whole = Field(5_000, ge=10)
    """Safety cap on PRADA's growing sets per client."""
    decoded_states: Whole = Field(1024, ge=0)
    """With a state store: clients whose state this process keeps decoded after writing it,
    so that their next observe, when the store returns that same record, skips decoding it
    (:mod:`monitor.state_cache`; verdicts are identical). About 20 KiB each with the default
    detectors; 0 decodes every record."""

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from monitor.detectors import REGISTRY

        if not names:
            raise ValueError("must name at least one detector")
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"must be among {', '.join(REGISTRY)}; "
                             f"unknown: {', '.join(unknown)}")
        if len(set(names)) != len(names):
            raise ValueError("must not repeat")
        return names

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        removed = [k for k in REMOVED_MONITOR_KEYS if isinstance(data, dict) and k in data]
        if removed:
            raise ValueError(f"{removed[0]} was removed in 0.2: window tests are truncated "
                             "products over evidence units now (set their sizes with "
                             "windows = [8, 32, 128]); remove it")
        return data

    @field_validator("windows")
    @classmethod
    def _window_sizes(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if not windows or any(not 2 <= w <= 4096 for w in windows):
            raise ValueError(f"must be a non-empty list of window sizes in [2, 4096], "
                             f"got {list(windows)}")
        if len(set(windows)) != len(windows):
            raise ValueError("must not repeat a window size")
        return tuple(sorted(windows))

    @classmethod
    def load(cls, path: str | Path) -> MonitorConfig:
        """The ``[monitor]`` table of a config file (defaults when it has none)."""
        return Settings.load(path).monitor

    def save(self, path: str | Path) -> None:
        """Write ``[monitor]`` to ``path`` (TOML, or JSON if it ends in ``.json``), keeping
        the file's other tables."""
        write_config_file(path, {"monitor": self.to_dict()})


# ----------------------------------------------------------------------------- [serving]
DEFAULT_ROUTES: tuple[str, ...] = (
    "/invocations",                                   # MLflow
    "/v1/models/{name}:predict",                      # KServe v1, TF Serving
    "/v1/models/{name}/versions/{version}:predict",   # TF Serving
    "/v1/models/{name}/labels/{label}:predict",       # TF Serving
    "/v2/models/{name}/infer",                        # KServe v2 / Open Inference Protocol
    "/v2/models/{name}/versions/{version}/infer",
    "/predictions/{name}",                            # TorchServe
    "/predictions/{name}/{version}",
    "/predict",
)
"""Routes watched by default: the well-known inference paths."""

Action = Literal["log", "alert", "degrade", "throttle", "block"]
ACTIONS: tuple[str, ...] = get_args(Action)
"""Actions an :class:`ActionLevel` can name (see :mod:`monitor.serving.policy`)."""


class ActionLevel(_Section):
    """Apply ``action`` to a flagged client whose peak score is at least ``min_score``.

    ``min_score=None`` means "at any flag".

    >>> ActionLevel(action="block", min_score=2.0)
    ActionLevel(action='block', min_score=2.0)
    """

    label: ClassVar[str] = "action"

    action: Action
    min_score: Real | None = None

    def applies(self, flagged: bool, peak_score: float) -> bool:
        """Whether this level is active for a client in that state."""
        return flagged and (self.min_score is None or peak_score >= self.min_score)


def _action_levels(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of actions, got {value!r}")
    levels = []
    for item in value:
        if isinstance(item, ActionLevel):
            levels.append(item)
        elif isinstance(item, str):
            levels.append(ActionLevel(action=item))
        elif isinstance(item, dict):
            levels.append(ActionLevel(**item))
        else:
            raise ValueError(f"each action must be a name or a table like "
                             f"{{action = 'block'}}, got {item!r}")
    return tuple(levels)


def _unknown_action(exc: SettingsError) -> ValueError:
    return ValueError(str(exc).replace("invalid action: action must be",
                                       "unknown action; choose"))


class ServingConfig(_Section):
    """Validated settings of the serving layer; unknown keys are rejected.

    >>> cfg = ServingConfig(actions=[{"action": "block"}], salt="s")
    >>> [a.action for a in cfg.actions], cfg.client_header, cfg.max_body_bytes
    (['block'], 'x-api-key', 1048576)
    >>> ServingConfig(colour="red")
    Traceback (most recent call last):
    ...
    monitor.settings.SettingsError: unknown [serving] key(s): colour; known keys: ...
    """

    label: ClassVar[str] = "[serving]"

    routes: Names = DEFAULT_ROUTES
    """Watched routes: paths, globs (``*`` one segment, ``**`` any) or ``{param}`` patterns
    (:mod:`monitor.serving.routes`); the defaults cover the well-known inference paths."""
    actions: tuple[ActionLevel, ...] = (
        ActionLevel(action="log"), ActionLevel(action="alert"))
    exposure_actions: tuple[Action, ...] = ("log", "alert")
    """Actions for a client whose exposure reached ``[monitor] exposure_limit`` (whether or
    not it is flagged)."""
    # client identity
    identity: tuple[Literal["bearer", "header", "peer"], ...] | None = None
    """Where a client's identity comes from, in order of precedence: ``bearer`` (the
    ``Authorization: Bearer`` token), ``header`` (``client_header``), ``peer`` (the peer
    address, through ``trusted_proxies`` only). A source not listed is ignored. ``None``:
    ``["header", "peer"]`` (``["bearer", "header", "peer"]`` with ``use_bearer``). If your
    API does not authenticate keys, a key header is the client's choice: use ``["peer"]``."""
    client_header: Text = "x-api-key"
    use_bearer: Flag = False
    trusted_proxies: Names = ()
    salt: Text | None = None
    """Salt of client-id hashes; ``None``: decided at startup (see
    :func:`monitor.serving.identity.resolve_salt`)."""
    group_by: Text | None = None
    """Group evidence (:mod:`monitor.grouping`): ``header:NAME`` (an account or tenant
    header), ``peer`` / ``peer:/24/48`` (the network of the peer address, through
    ``trusted_proxies`` only) or ``cohort:SECONDS`` (ids first seen in the same time bucket).
    Each group's queries are also tested together; a flagged group is logged and alerted
    (``group_flagged``), its members are not refused for it. ``None``: no groups."""
    # input handling
    max_body_bytes: Whole = Field(1 << 20, gt=0)
    max_rows: Whole = Field(10_000, gt=0)
    """Rows one request may carry (more: 413)."""
    unparseable: Literal["pass", "reject", "observe-none"] = "pass"
    """A body on a watched route that no extractor understands: ``pass`` it to the app
    unobserved (counted, and logged naming the route), ``reject`` it with 400, or
    ``observe-none`` (pass it, counted, not logged: for routes that also carry other
    bodies). A flagged client's unreadable body is always refused."""
    unwatched: Literal["pass", "refuse"] = "pass"
    """A request with a body on a path no route watches: ``pass`` (counted) or ``refuse``
    (403)."""
    silence_seconds: Real = Field(300.0, ge=0)
    """Warn (log and metric) when requests flow but none was observed for this long
    (0: never)."""
    shadow: Flag = False
    """Observe after the answer is sent: the request that raises a flag (and any the client
    sends while that observe runs) is answered in full, and the answer no longer waits for
    the monitor. Trades those answers for latency."""
    inline_rows: Whole = Field(64, ge=0)
    """Requests of at most this many rows are observed on the event loop when the store is
    local (memory, SQLite): no worker-thread hop, no GIL hand-over between the loop and a
    thread. Larger requests, and every request on Redis, are observed in a worker thread so
    the loop stays free. 0: always in a thread."""
    fail_mode: Literal["open", "closed"] = "open"
    # actions
    degrade_mode: Literal["label", "round", "flatten"] = "flatten"
    degrade_decimals: Whole = Field(1, ge=0, le=6)
    degrade_strength: Real = Field(0.5, gt=0, le=1)
    throttle_rate: Real = Field(0.2, gt=0)
    throttle_burst: Real = Field(1, gt=0)
    refusal_message: Text = Field("request refused", min_length=1, max_length=500)
    """The text of a blocked client's 403 (``{"error": "..."}``): neutral by default, so the
    answer does not tell an attacker it was caught."""
    # alerts
    webhook_url: Text | None = None
    webhook_retries: Whole = Field(3, ge=0, le=20)
    webhook_backoff: Real = Field(0.5, ge=0)
    webhook_timeout: Real = Field(5.0, gt=0)
    # admin / bookkeeping
    history_size: Whole = Field(200, gt=0)
    alerts_size: Whole = Field(1000, gt=0)
    metrics_require_token: Flag = True
    """Whether ``/monitor/metrics`` needs the admin token (the default)."""
    flag_refresh_seconds: Real = Field(5.0, gt=0)
    """How often each worker refreshes its local list of flagged clients from the store
    (it keeps refusing them through a store outage)."""

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        try:
            return _action_levels(value)
        except SettingsError as exc:
            raise _unknown_action(exc) from None

    @field_validator("routes")
    @classmethod
    def _routes(cls, routes: tuple[str, ...]) -> tuple[str, ...]:
        if not routes or not all(r.startswith("/") for r in routes):
            raise ValueError(f"must be a non-empty list of paths starting with '/', "
                             f"got {list(routes)!r}")
        for route in routes:  # monitor.serving.routes compiles them
            if re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*\}", "", route).count("{") or "}" in re.sub(
                    r"\{[A-Za-z_][A-Za-z0-9_]*\}", "", route):
                raise ValueError(f"route {route!r}: a parameter is written {{name}}")
        return routes

    @field_validator("identity")
    @classmethod
    def _identity(cls, sources):
        if sources is not None and (not sources or len(set(sources)) != len(sources)):
            raise ValueError("must list bearer, header and/or peer, each at most once")
        return sources

    @property
    def identity_sources(self) -> tuple[str, ...]:
        """The identity precedence in force (see ``identity``)."""
        if self.identity is not None:
            return self.identity
        return ("bearer", "header", "peer") if self.use_bearer else ("header", "peer")

    @field_validator("group_by")
    @classmethod
    def _grouping(cls, spec: str | None) -> str | None:
        from monitor.grouping import HEADER_NAME, HeaderGrouping, PeerGrouping, parse_grouping

        if spec is None:
            return None
        grouping = parse_grouping(spec)  # GroupingError (a ValueError) says what to write
        if isinstance(grouping, HeaderGrouping) and not HEADER_NAME.match(grouping.name):
            raise ValueError(f"{spec!r}: {grouping.name!r} is not an HTTP header name")
        if isinstance(grouping, PeerGrouping) and grouping.column is not None:
            raise ValueError(f"{spec!r}: a log column is for offline analysis; online write "
                             "peer or peer:/24/48")
        return spec

    @property
    def grouping(self):
        """The parsed ``group_by`` (:mod:`monitor.grouping`), or ``None``."""
        from monitor.grouping import parse_grouping

        return None if self.group_by is None else parse_grouping(self.group_by)

    @field_validator("client_header")
    @classmethod
    def _lower(cls, header: str) -> str:
        return header.lower()

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR") from None
        return cidrs

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url

    def levels(self, action: str) -> list[ActionLevel]:
        """The configured levels naming ``action``."""
        return [a for a in self.actions if a.action == action]

    def to_dict(self) -> dict[str, Any]:
        """A TOML/JSON-ready dict; the salt (a deployment secret) is left out."""
        out = super().to_dict()
        out.pop("salt", None)
        return out

    @classmethod
    def load(cls, path: str | Path) -> ServingConfig:
        """The ``[serving]`` table of a config file (defaults when it has none)."""
        return Settings.load(path).serving


# ----------------------------------------------------------------------------- [store]
STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss")
_STORE_OPTIONS = {
    "memory": ("ttl", "flag_ttl"),
    "sqlite": ("ttl", "flag_ttl", "busy_timeout", "max_bytes"),
    "redis": ("ttl", "flag_ttl", "on_error", "timeout", "buffer", "prefix"),
}
_OPTION_PARSERS = {"ttl": float, "flag_ttl": float, "busy_timeout": float, "max_bytes": int,
                   "on_error": str,
                   "timeout": float, "buffer": int, "prefix": str}
DEFAULT_TTL = 30 * 24 * 3600.0
"""Default idle time (30 days) after which an unflagged client's evidence is forgotten."""
SQLITE_BUSY_TIMEOUT = 30.0
"""Default of ``busy_timeout`` (:class:`~monitor.stores.SQLiteStore` too)."""
OnError = Literal["open", "closed"]
ON_ERROR_MODES: tuple[str, ...] = get_args(OnError)
"""What a Redis store may do on an outage (``on_error``)."""
REDIS_ON_ERROR: OnError = "open"
REDIS_TIMEOUT = 0.5
REDIS_BUFFER = 10_000
REDIS_PREFIX = "extraction-monitor:"
"""Defaults of ``on_error``, ``timeout``, ``buffer`` and ``prefix``
(:class:`~monitor.stores.RedisStore` too)."""


class StoreConfig(_Section):
    """Where per-client state lives: a URI plus its options (also accepted in the URI's query).

    ``uri=None`` means the embedded default, a SQLite database in the data folder
    (:func:`monitor.environment.default_state_uri`).

    >>> StoreConfig.from_uri("redis://10.0.0.5:6379/0?ttl=3600&on_error=closed").on_error
    'closed'
    >>> StoreConfig.from_uri("sqlite:///tmp/s.db?colour=red")
    Traceback (most recent call last):
    ...
    monitor.settings.SettingsError: unknown state store option 'colour' for sqlite://; known: busy_timeout, flag_ttl, max_bytes, ttl
    """

    label: ClassVar[str] = "[store]"

    uri: Text | None = None
    ttl: Real | None = Field(DEFAULT_TTL, ge=0)
    """Seconds after which an idle, unflagged client's evidence is forgotten (default 30
    days; ``0`` or ``None``: never). Flagged clients are kept for ``flag_ttl``."""
    flag_ttl: Real | None = Field(None, ge=0)
    """Seconds an idle *flagged* client's record (its flag) is kept (``None`` or ``0``, the
    default: forever), so a flag outlives the evidence TTL."""
    busy_timeout: Real = Field(SQLITE_BUSY_TIMEOUT, gt=0)
    """SQLite: seconds a writer waits for the database lock."""
    max_bytes: Whole | None = Field(None, gt=0)
    """SQLite: cap on the database size; past it writes fail (an alarm, as a full disk)."""
    on_error: OnError = REDIS_ON_ERROR
    """Redis: on an outage, answer and buffer (open) or refuse with 503 (closed)."""
    timeout: Real = Field(REDIS_TIMEOUT, gt=0)
    """Redis: socket timeout in seconds."""
    buffer: Whole = Field(REDIS_BUFFER, ge=0)
    """Redis: client states buffered locally during an outage."""
    prefix: Text = REDIS_PREFIX
    """Redis: key prefix."""

    @field_validator("uri")
    @classmethod
    def _scheme(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        if "://" not in uri:
            raise ValueError(f"must look like memory://, sqlite:///path.db or "
                             f"redis://host:port/db; got {uri!r}")
        if urlsplit(uri).scheme.lower() not in STORE_SCHEMES:
            raise ValueError(f"{uri!r} is an unsupported state store URI; use memory://, "
                             "sqlite:///path.db or redis://host:port/db")
        return uri

    @property
    def scheme(self) -> str:
        """``memory``, ``sqlite`` or ``redis`` (``rediss`` counts as redis)."""
        scheme = urlsplit(self.uri).scheme.lower() if self.uri else "sqlite"
        return "redis" if scheme == "rediss" else scheme

    @classmethod
    def from_uri(cls, uri: str, **defaults: Any) -> StoreConfig:
        """Options from the URI's query string (``?ttl=60``) over ``defaults``."""
        base = cls(uri=uri.split("?", 1)[0], **defaults)
        known = _STORE_OPTIONS[base.scheme]
        options: dict[str, Any] = {}
        for key, value in parse_qsl(urlsplit(uri).query, keep_blank_values=True):
            if key not in known:
                raise SettingsError(f"unknown state store option {key!r} for {base.scheme}://; "
                                    f"known: {', '.join(sorted(known))}")
            parse = _OPTION_PARSERS[key]
            try:
                options[key] = parse(value)
            except ValueError:
                raise SettingsError(f"state store option {key}={value!r} is not a valid "
                                    f"{parse.__name__}") from None
        return base.replace(**options)


# ----------------------------------------------------------------------------- the file
TABLES = ("monitor", "serving", "store", "tuning")


class Settings(_Section):
    """All tables of a config file, read once.

    >>> s = Settings.from_dict({"monitor": {"alpha": 0.05}, "store": {"uri": "memory://"}})
    >>> s.monitor.alpha, s.serving.routes[0], s.store.scheme
    (0.05, '/invocations', 'memory')
    """

    label: ClassVar[str] = "config"

    monitor: MonitorConfig = MonitorConfig()
    serving: ServingConfig = ServingConfig()
    store: StoreConfig = StoreConfig()
    tuning: dict[str, Any] | None = None
    """Provenance of a tuned threshold (``extraction-monitor tune``); informational."""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Settings:
        """Build from a file's tables; a table or key that is not known is an error."""
        data = data or {}
        unknown = [k for k in data if k not in TABLES]
        if unknown:
            raise SettingsError(
                f"unknown config table(s) {', '.join(f'[{k}]' for k in unknown)}; "
                f"known tables: {', '.join(f'[{t}]' for t in TABLES)}")
        sections: dict[str, Any] = {}
        for name, model in (("monitor", MonitorConfig), ("serving", ServingConfig),
                            ("store", StoreConfig)):
            if name in data:
                sections[name] = model.from_dict(data[name])
        if "tuning" in data:
            if not isinstance(data["tuning"], dict):
                raise SettingsError("[tuning] must be a table")
            sections["tuning"] = data["tuning"]
        return cls(**sections)

    @classmethod
    def load(cls, path: str | Path | None) -> Settings:
        """Read ``path`` (TOML, or JSON with the same tables); defaults for ``None``."""
        if path is None:
            return cls()
        try:
            return cls.from_dict(read_config_file(path))
        except SettingsError as exc:
            raise SettingsError(f"{Path(path).name}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Every table, TOML/JSON-ready (the serving salt left out)."""
        out = {"monitor": self.monitor.to_dict(), "serving": self.serving.to_dict(),
               "store": self.store.to_dict()}
        if self.tuning is not None:
            out["tuning"] = self.tuning
        return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """All tables of a config file (TOML or JSON), as a dict of dicts."""
    path = Path(path)
    if not path.exists():
        raise SettingsError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid "
                            f"{path.suffix[1:].upper() or 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold tables ([monitor], [serving], ...)")
    return data


def write_config_file(path: str | Path, tables: dict[str, dict[str, Any]]) -> None:
    """Write tables to ``path``, keeping the tables already in the file."""
    path = Path(path)
    existing = read_config_file(path) if path.exists() else {}
    existing.update(tables)
    if path.suffix == ".json":
        path.write_text(json.dumps(existing, indent=2) + "\n")
    else:
        path.write_text(tomli_w.dumps(existing))


__all__ = [
    "ACTIONS", "DEFAULT_DETECTORS", "REMOVED_MONITOR_KEYS", "ActionLevel", "MonitorConfig",
    "ServingConfig", "Settings", "SettingsError", "StoreConfig", "read_config_file",
    "write_config_file",
]
