"""``ServingConfig``: how the HTTP layer identifies clients and acts on verdicts.

Loaded from the ``[serving]`` table of the same TOML/JSON file whose
``[monitor]`` table configures the :class:`monitor.Monitor`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIONS = ("log", "alert", "degrade", "throttle", "block")
"""Actions an :class:`ActionLevel` can name (see :mod:`monitor.serving.actions`)."""

DEGRADE_MODES = ("label", "round", "flatten")
FAIL_MODES = ("open", "closed")
UNPARSEABLE_MODES = ("reject", "pass")
SALT_ENV = "EXTRACTION_MONITOR_SALT"


@dataclass(frozen=True)
class ActionLevel:
    """Apply ``action`` to a flagged client whose peak score is at least ``min_score``.

    ``min_score=None`` means "at any flag".

    >>> ActionLevel("block", min_score=2.0)
    ActionLevel(action='block', min_score=2.0)
    """

    action: str
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; choose one of {', '.join(ACTIONS)}")
        if self.min_score is not None and not isinstance(self.min_score, int | float):
            raise ValueError(f"min_score must be a number or absent, got {self.min_score!r}")

    def applies(self, flagged: bool, peak_score: float) -> bool:
        """Whether this level is active for a client in that state."""
        return flagged and (self.min_score is None or peak_score >= self.min_score)


def _default_actions() -> tuple[ActionLevel, ...]:
    return (ActionLevel("log"), ActionLevel("alert"))


@dataclass
class ServingConfig:
    """Validated settings of the serving layer; unknown keys are rejected.

    >>> cfg = ServingConfig(actions=[{"action": "block"}], salt="s")
    >>> [a.action for a in cfg.actions], cfg.client_header, cfg.max_body_bytes
    (['block'], 'x-api-key', 1048576)
    >>> ServingConfig(colour="red")
    Traceback (most recent call last):
    ...
    TypeError: ServingConfig.__init__() got an unexpected keyword argument 'colour'
    """

    routes: tuple[str, ...] = ("/predict",)
    actions: tuple[ActionLevel, ...] = field(default_factory=_default_actions)
    # client identity
    client_header: str = "x-api-key"
    use_bearer: bool = False
    trusted_proxies: tuple[str, ...] = ()
    salt: str | None = None
    # input handling
    max_body_bytes: int = 1 << 20
    unparseable: str = "reject"
    fail_mode: str = "open"
    # actions
    degrade_mode: str = "flatten"
    degrade_decimals: int = 1
    degrade_strength: float = 0.5
    throttle_rate: float = 0.2
    throttle_burst: int = 1
    # alerts
    webhook_url: str | None = None
    webhook_retries: int = 3
    webhook_backoff: float = 0.5
    webhook_timeout: float = 5.0
    # admin / bookkeeping
    history_size: int = 200
    alerts_size: int = 1000
    metrics_require_token: bool = False

    def __post_init__(self) -> None:
        self.routes = tuple(self.routes)
        if not self.routes or not all(isinstance(r, str) and r.startswith("/") for r in self.routes):
            raise ValueError(f"routes must be a non-empty list of paths starting with '/', got {self.routes!r}")
        self.actions = tuple(
            a if isinstance(a, ActionLevel) else _action_from(a) for a in self.actions
        )
        self.client_header = str(self.client_header).lower()
        self.trusted_proxies = tuple(self.trusted_proxies)
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {cidr!r} is not an IP address or CIDR") from None
        if self.salt is None:
            self.salt = os.environ.get(SALT_ENV) or secrets.token_hex(16)
        _check_choice("unparseable", self.unparseable, UNPARSEABLE_MODES)
        _check_choice("fail_mode", self.fail_mode, FAIL_MODES)
        _check_choice("degrade_mode", self.degrade_mode, DEGRADE_MODES)
        _check_positive("max_body_bytes", self.max_body_bytes)
        _check_positive("throttle_rate", self.throttle_rate)
        _check_positive("throttle_burst", self.throttle_burst)
        _check_positive("webhook_timeout", self.webhook_timeout)
        _check_positive("history_size", self.history_size)
        _check_positive("alerts_size", self.alerts_size)
        if not 0 <= self.degrade_decimals <= 6:
            raise ValueError(f"degrade_decimals must be in 0..6, got {self.degrade_decimals!r}")
        if not 0 < self.degrade_strength <= 1:
            raise ValueError(f"degrade_strength must be in (0, 1], got {self.degrade_strength!r}")
        if not 0 <= self.webhook_retries <= 20:
            raise ValueError(f"webhook_retries must be in 0..20, got {self.webhook_retries!r}")
        if self.webhook_backoff < 0:
            raise ValueError(f"webhook_backoff must be >= 0, got {self.webhook_backoff!r}")
        if self.webhook_url is not None and not str(self.webhook_url).startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"webhook_url must be an http(s) URL, got {self.webhook_url!r}")

    def levels(self, action: str) -> list[ActionLevel]:
        """The configured levels naming ``action``."""
        return [a for a in self.actions if a.action == action]

    def to_dict(self) -> dict[str, Any]:
        """A TOML/JSON-able dict (the salt is left out)."""
        out = dataclasses.asdict(self)
        out.pop("salt")
        out["routes"] = list(self.routes)
        out["trusted_proxies"] = list(self.trusted_proxies)
        out["actions"] = [
            {k: v for k, v in dataclasses.asdict(a).items() if v is not None} for a in self.actions
        ]
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> ServingConfig:
        """Build from a ``[serving]`` table; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(
                f"unknown [serving] key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**table)

    @classmethod
    def load(cls, path: str | Path) -> ServingConfig:
        """Read the ``[serving]`` table of a TOML or JSON file (absent table -> defaults)."""
        return cls.from_dict(read_table(path, "serving"))


def read_table(path: str | Path, table: str) -> dict[str, Any]:
    """The ``[table]`` of a TOML or JSON config file, or ``{}`` if it has none."""
    from monitor.config import read_config_file

    section = read_config_file(path).get(table, {})
    if not isinstance(section, dict):
        raise ValueError(f"[{table}] in {path} must be a table")
    return section


def _action_from(item: Any) -> ActionLevel:
    if isinstance(item, str):
        return ActionLevel(item)
    if not isinstance(item, dict):
        raise ValueError(f"each action must be a table like {{action = 'block'}}, got {item!r}")
    unknown = set(item) - {"action", "min_score"}
    if unknown or "action" not in item:
        raise ValueError(f"an action takes keys 'action' and optional 'min_score', got {item!r}")
    return ActionLevel(item["action"], item.get("min_score"))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
