"""extraction-monitor: detect model-extraction attacks against prediction APIs.

The pieces, in the order a query meets them:

* :class:`Profile` — fitted once from the victim model and its training data; holds
  scaling, a reference index and honest per-detector calibration.
* :class:`Monitor` — ``observe(client_id, X, outputs)`` runs the detectors
  (:mod:`monitor.detectors`) on each distinct query, turns their extreme events into
  calibrated window evidence (:mod:`monitor.evidence`, :mod:`monitor.scoring`) in bounded
  per-client state (:mod:`monitor.state`), and returns a :class:`Verdict`.
* :class:`MonitorConfig` — validated detection settings; :class:`Settings` reads every table
  of a config file (:mod:`monitor.settings`).

Scores always point one way: higher means more suspicious.
"""

from monitor.errors import InvalidInput
from monitor.monitor import Monitor
from monitor.profile import Profile
from monitor.settings import MonitorConfig, Settings, SettingsError
from monitor.verdict import Verdict

__version__ = "0.2.0"

__all__ = ["InvalidInput", "Monitor", "MonitorConfig", "Profile", "Settings", "SettingsError",
           "Verdict", "__version__"]
