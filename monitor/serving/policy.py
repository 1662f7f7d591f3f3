"""The enforcement policy: what to do with a request, before it is answered and after its
verdict.

Enforcement actions by severity: ``block`` (403) > ``throttle`` (429 with ``Retry-After``)
> ``degrade`` (answer, but with less information). ``log`` and ``alert`` are side effects
fired once, by the request whose rows raised the flag. All apply from the flagging query
onward.

* :meth:`EnforcementPolicy.before_request` — an already-flagged client is refused (block,
  or throttle when its bucket is empty) before its request reaches the app;
* :meth:`EnforcementPolicy.after_verdict` — the verdict of the request's rows decides how
  its answer is sent, and whether this request newly flagged the client.

>>> from monitor.settings import ServingConfig
>>> policy = EnforcementPolicy(ServingConfig(actions=["degrade", {"action": "block",
...                                                                "min_score": 5}]))
>>> policy.action_for(True, 1.0), policy.action_for(True, 9.0), policy.action_for(False, 9.0)
('degrade', 'block', None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.serving.actions import Throttle
from monitor.settings import ServingConfig

ENFORCEMENT = ("block", "throttle", "degrade")
"""Enforcement actions, most severe first."""

Outcome = Literal["serve", "block", "throttle", "degrade"]


@dataclass(frozen=True)
class Decision:
    """How to answer one request."""

    outcome: Outcome
    retry_after: int = 0
    """Seconds to wait (``Retry-After``) when throttled."""
    newly_flagged: bool = False
    """Whether this request's rows raised the client's flag."""
    newly_exposed: bool = False
    """Whether this request took the client's exposure to the configured limit."""


SERVE = Decision("serve")


class EnforcementPolicy:
    """Decisions from the ``[serving]`` actions; holds the throttle's token buckets."""

    def __init__(self, config: ServingConfig, throttle: Throttle | None = None) -> None:
        self.config = config
        self.throttle = throttle or Throttle(config.throttle_rate, config.throttle_burst)

    @property
    def refuses_early(self) -> bool:
        """Whether any action refuses requests (so flags must be checked before the app)."""
        refusing = {"block", "throttle"}
        return bool(self.config.levels("block") or self.config.levels("throttle")
                    or refusing & set(self.config.exposure_actions))

    def active(self, flagged: bool, peak_score: float, exposed: bool = False) -> set[str]:
        """Every action active for a client: its flag's levels, and the exposure actions once
        its exposure reached the limit."""
        active = {a.action for a in self.config.actions if a.applies(flagged, peak_score)}
        return active | (set(self.config.exposure_actions) if exposed else set())

    def action_for(self, flagged: bool, peak_score: float, exposed: bool = False) -> str | None:
        """The most severe enforcement action active for a client, or ``None``."""
        active = self.active(flagged, peak_score, exposed)
        return next((action for action in ENFORCEMENT if action in active), None)

    def logs(self, peak_score: float) -> bool:
        """Whether a new flag at ``peak_score`` is logged."""
        return any(a.applies(True, peak_score) for a in self.config.levels("log"))

    def alerts(self, peak_score: float) -> bool:
        """Whether a new flag at ``peak_score`` is sent as an alert."""
        return any(a.applies(True, peak_score) for a in self.config.levels("alert"))

    def before_request(self, client_id: str, flagged: bool, peak_score: float,
                       exposed: bool = False) -> Decision:
        """Refuse an already-flagged (or over-exposed) client's request before the app sees
        it, or let it pass."""
        if not (flagged or exposed):
            return SERVE
        action = self.action_for(flagged, peak_score, exposed)
        if action == "block":
            return Decision("block")
        if action == "throttle":
            wait = self.throttle.take(client_id)
            if wait:
                return Decision("throttle", retry_after=wait)
        return SERVE

    def after_verdict(self, client_id: str, verdict, n_rows: int) -> Decision:
        """How to answer a request whose ``n_rows`` rows gave ``verdict``."""
        newly = bool(verdict.flagged and verdict.flag_at is not None
                     and verdict.n_queries - n_rows <= verdict.flag_at < verdict.n_queries)
        exposed = bool(getattr(verdict, "exposure_exceeded", False))
        newly_exposed = exposed and verdict.exposure_at == verdict.n_queries
        throttles = "throttle" in self.active(verdict.flagged, verdict.peak_score, exposed)
        started = (newly or newly_exposed) and throttles
        if started:
            self.throttle.start(client_id)
        action = self.action_for(verdict.flagged, verdict.peak_score, exposed)
        news = {"newly_flagged": newly, "newly_exposed": newly_exposed}
        if action == "block":
            return Decision("block", **news)
        if action == "throttle" and started:
            return Decision("throttle", retry_after=self.throttle.take(client_id) or 1, **news)
        if action == "degrade":
            return Decision("degrade", **news)
        return Decision("serve", **news)

    def forget(self, client_id: str) -> None:
        """Drop a client's throttle bucket (after an operator reset)."""
        self.throttle.forget(client_id)


__all__ = ["ENFORCEMENT", "SERVE", "Decision", "EnforcementPolicy"]
