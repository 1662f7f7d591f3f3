"""The enforcement policy: what to do with a request, before it is answered and after its
verdict.

Enforcement actions by severity: ``block`` (403) > ``throttle`` (429 with ``Retry-After``)
> ``degrade`` (answer, but with less information). ``log`` and ``alert`` are side effects
fired once, by the request whose rows raised the flag. All apply from the flagging query
onward.

* :meth:`EnforcementPolicy.before_request` — an already-flagged client is blocked before its
  request reaches the app, or told which action applies to it;
* :meth:`EnforcementPolicy.admit` — a throttled client's request, once its rows are counted,
  takes one token per row from the client's bucket (shared by every worker through the
  state store) or is refused;
* :meth:`EnforcementPolicy.after_verdict` — the verdict of the request's rows decides how
  its answer is sent, and whether this request newly flagged the client.

>>> from monitor.settings import ServingConfig
>>> policy = EnforcementPolicy(ServingConfig(actions=["degrade", {"action": "block",
...                                                                "min_score": 5}]))
>>> policy.action_for(True, 1.0), policy.action_for(True, 9.0), policy.action_for(False, 9.0)
('degrade', 'block', None)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.serving.actions import Throttle
from monitor.settings import ServingConfig

logger = logging.getLogger("extraction_monitor.serving")

ENFORCEMENT = ("block", "throttle", "degrade")
"""Enforcement actions, most severe first."""

Outcome = Literal["serve", "block", "throttle", "degrade"]
Limiter = Callable[[str, float, float, float, bool], float]
"""``take(client_id, cost, rate, burst, start) -> seconds to wait`` (0: allowed)."""


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
    message: str | None = None
    """Why, when the reason is more specific than the outcome."""


SERVE = Decision("serve")


class EnforcementPolicy:
    """Decisions from the ``[serving]`` actions.

    ``limiter`` takes throttle tokens (default: per-process buckets; serving passes the
    state store's :meth:`~monitor.stores.StateStore.take` so N workers enforce one rate).
    When the limiter fails (store outage) the per-process buckets stand in.
    """

    def __init__(self, config: ServingConfig, throttle: Throttle | None = None,
                 limiter: Limiter | None = None) -> None:
        self.config = config
        self.throttle = throttle or Throttle(config.throttle_rate, config.throttle_burst)
        self.limiter = limiter

    @property
    def refuses_early(self) -> bool:
        """Whether any action refuses requests (so flags must be checked before the app)."""
        return any(self.config.levels(a) for a in ENFORCEMENT) or bool(
            set(ENFORCEMENT) & set(self.config.exposure_actions))

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
        """Block an already-flagged (or over-exposed) client before the app sees its
        request; otherwise ``Decision(action or "serve")`` says what applies once its rows
        are read (throttle: :meth:`admit`; degrade: the answer)."""
        if not (flagged or exposed):
            return SERVE
        action = self.action_for(flagged, peak_score, exposed)
        return Decision(action) if action else SERVE

    def _take(self, client_id: str, cost: float, start: bool = False) -> int:
        rate, burst = self.config.throttle_rate, self.config.throttle_burst
        if self.limiter is not None:
            try:
                wait = self.limiter(client_id, cost, rate, burst, start)
            except Exception as exc:  # store outage: this worker's buckets stand in
                logger.warning("shared throttle unavailable (%s); using this worker's buckets",
                               type(exc).__name__)
            else:
                return 0 if wait <= 0 else max(1, math.ceil(wait))
        if start:
            self.throttle.start(client_id)
            return max(1, math.ceil(cost / rate))
        return self.throttle.take(client_id, cost)

    def admit(self, client_id: str, action: str | None, n_rows: int) -> Decision:
        """Whether a request of ``n_rows`` rows from a client under ``action`` may go on:
        a throttled client pays one token per row (blocking call: run it off the loop)."""
        if action != "throttle":
            return SERVE
        burst = self.config.throttle_burst
        if n_rows > burst:
            return Decision("throttle", retry_after=max(1, math.ceil(burst / self.config
                                                                      .throttle_rate)),
                            message=f"at most {burst:g} rows per request while throttled")
        wait = self._take(client_id, n_rows)
        return Decision("throttle", retry_after=wait) if wait else SERVE

    def after_verdict(self, client_id: str, verdict, n_rows: int) -> Decision:
        """How to answer a request whose ``n_rows`` rows gave ``verdict`` (blocking when it
        starts a throttle: run it off the loop)."""
        newly = bool(verdict.flagged and verdict.flag_at is not None
                     and verdict.n_queries - n_rows <= verdict.flag_at < verdict.n_queries)
        exposed = bool(getattr(verdict, "exposure_exceeded", False))
        newly_exposed = exposed and verdict.exposure_at == verdict.n_queries
        throttles = "throttle" in self.active(verdict.flagged, verdict.peak_score, exposed)
        started = (newly or newly_exposed) and throttles
        action = self.action_for(verdict.flagged, verdict.peak_score, exposed)
        news = {"newly_flagged": newly, "newly_exposed": newly_exposed}
        if action == "block":
            return Decision("block", **news)
        if action == "throttle" and started:  # the bucket starts empty: this one waits
            wait = self._take(client_id, 0, start=True)
            return Decision("throttle", retry_after=max(1, wait, math.ceil(
                1 / self.config.throttle_rate)), **news)
        if action == "degrade" or "degrade" in self.active(verdict.flagged, verdict.peak_score,
                                                           exposed):
            return Decision("degrade", **news)
        return Decision("serve", **news)

    def forget(self, client_id: str) -> None:
        """Drop a client's throttle bucket (after an operator reset)."""
        self.throttle.forget(client_id)


__all__ = ["ENFORCEMENT", "SERVE", "Decision", "EnforcementPolicy"]
