"""extraction-monitor: detect model-extraction attacks against prediction APIs.

The pieces, in the order a query meets them:

* :class:`Profile` — fitted once from the victim model and its training data;
  holds scaling, a reference index and honest calibration distributions.
* :class:`Monitor` — ``observe(client_id, X, outputs)`` runs the detectors
  (:mod:`monitor.detectors`) on each distinct query, turns their extreme
  events into calibrated window evidence (:mod:`monitor.evidence`) in bounded
  per-client state (:mod:`monitor.state`), and returns a :class:`Verdict`.
* :class:`MonitorConfig` — validated settings, saved as TOML or JSON.

Scores always point one way: higher means more suspicious.
"""

from monitor.config import MonitorConfig
from monitor.errors import InvalidInput
from monitor.monitor import Monitor
from monitor.profile import Profile
from monitor.verdict import Verdict

__all__ = ["InvalidInput", "Monitor", "MonitorConfig", "Profile", "Verdict"]
