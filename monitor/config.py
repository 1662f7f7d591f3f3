"""Monitor configuration: a validated dataclass saved as TOML or JSON.

Unknown keys are rejected, so a typo in a config file is an error, not a
silently ignored setting.

>>> from monitor.config import MonitorConfig
>>> MonitorConfig(alpha=0.001).alpha
0.001
>>> MonitorConfig.from_dict({"alpah": 0.1})
Traceback (most recent call last):
...
ValueError: unknown monitor config key(s): alpah; known keys: alpha, broad_level, ...
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

DETECTORS = ("density", "boundary", "chain")
"""The calibrated detectors a monitor can run."""

DEFAULT_DETECTORS = ("density", "boundary")
"""The detectors on by default. ``chain`` is opt-in: it catches perturbation
chains early but also flags benign clients that re-send noisy copies of the
same records (see docs/detectors.md)."""


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of a :class:`~monitor.Monitor`.

    Each detector runs two window tests on its per-query p-values: a *sharp*
    one (p <= ``extreme_level`` in the last ``window`` queries) for blatant
    traffic, and a *broad* one (p <= ``broad_level`` in the last
    ``broad_window``) for traffic that is only moderately unusual but
    persistently so. The false-alarm guarantee: a benign client whose events
    occur independently at rates of at most ``tolerated_rate`` and
    ``broad_tolerated_rate`` is flagged with probability at most ``alpha`` over
    its first ``horizon`` distinct queries.
    """

    alpha: float = 0.01
    """Target probability that a benign client is ever flagged within ``horizon`` queries."""
    horizon: int = 10_000
    """Number of distinct queries the ``alpha`` guarantee covers."""
    window: int = 50
    """Per-detector evidence window: the last ``window`` distinct queries."""
    extreme_level: float = 0.01
    """A query is extreme for a detector when its conformal p-value is at most this."""
    tolerated_rate: float = 0.05
    """Rate of extreme queries a benign client may show (drift, narrow data) without being flagged."""
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    """Detectors combined into the overall score."""
    broad_level: float = 0.1
    """Second, broader test: a query is unusual when its p-value is at most this."""
    broad_window: int = 200
    """Window of the broad test (0 turns it off)."""
    broad_tolerated_rate: float = 0.3
    """Rate of unusual queries a benign client may show in the broad test."""
    chain_memory: int = 64
    """Distinct recent queries kept per client for the near-duplicate chain detector."""
    dedup_memory: int = 256
    """Recent row hashes kept per client to recognise exact retries."""
    history: int = 64
    """Recent overall scores kept per client (for timelines and the admin API)."""
    score_threshold: float | None = None
    """Overall score at which a client is flagged; ``None`` means ``-log10(alpha)``.
    Set by ``extraction-monitor tune`` from an operator's own benign logs."""
    prada: bool = False
    """Also run the PRADA baseline (Juuti et al. 2019); its state grows with history."""
    prada_delta: float = 0.95
    """PRADA alarm threshold on the Shapiro-Wilk W statistic."""
    prada_max_stored: int = 5_000
    """Safety cap on PRADA's growing sets per client."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "detectors", tuple(self.detectors))
        checks = [
            (0 < self.alpha < 1, "alpha must be in (0, 1)"),
            (self.horizon >= 1, "horizon must be >= 1"),
            (self.score_threshold is None or self.score_threshold > 0,
             "score_threshold must be > 0 (or absent)"),
            (5 <= self.window <= 10_000, "window must be in [5, 10000]"),
            (0 < self.extreme_level < 1, "extreme_level must be in (0, 1)"),
            (self.extreme_level <= self.tolerated_rate < 1,
             "tolerated_rate must be in [extreme_level, 1)"),
            (self.broad_window == 0 or 5 <= self.broad_window <= 10_000,
             "broad_window must be 0 (off) or in [5, 10000]"),
            (0 < self.broad_level < 1, "broad_level must be in (0, 1)"),
            (self.broad_level <= self.broad_tolerated_rate < 1,
             "broad_tolerated_rate must be in [broad_level, 1)"),
            (len(self.detectors) > 0, "detectors must name at least one detector"),
            (set(self.detectors) <= set(DETECTORS),
             f"detectors must be among {', '.join(DETECTORS)}"),
            (len(set(self.detectors)) == len(self.detectors), "detectors must not repeat"),
            (self.chain_memory >= 1, "chain_memory must be >= 1"),
            (self.dedup_memory >= 0, "dedup_memory must be >= 0"),
            (self.history >= 1, "history must be >= 1"),
            (0 < self.prada_delta < 1, "prada_delta must be in (0, 1)"),
            (self.prada_max_stored >= 10, "prada_max_stored must be >= 10"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid monitor config: {message}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown monitor config key(s): {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["detectors"] = list(self.detectors)
        if out["score_threshold"] is None:  # TOML has no null
            del out["score_threshold"]
        return out

    @classmethod
    def load(cls, path: str | Path) -> MonitorConfig:
        """Read the ``[monitor]`` table of a TOML file (or the top level of a JSON file)."""
        return cls.from_dict(read_config_file(path).get("monitor", {}))

    def save(self, path: str | Path) -> None:
        """Write ``[monitor]`` to ``path`` (TOML, or JSON if it ends in ``.json``)."""
        write_config_file(path, {"monitor": self.to_dict()})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """All tables of a config file (TOML or JSON), as a dict of dicts."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if path.suffix == ".json" and "monitor" not in data:
        data = {"monitor": data}
    return data


def write_config_file(path: str | Path, tables: dict[str, dict[str, Any]]) -> None:
    """Write tables to ``path``, merging with tables already in the file."""
    path = Path(path)
    existing = read_config_file(path) if path.exists() else {}
    existing.update(tables)
    if path.suffix == ".json":
        path.write_text(json.dumps(existing, indent=2) + "\n")
    else:
        path.write_text(tomli_w.dumps(existing))


__all__ = ["DEFAULT_DETECTORS", "DETECTORS", "MonitorConfig", "read_config_file", "write_config_file"]
