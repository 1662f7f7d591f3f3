"""Baselines the product's detectors are compared against (not part of the default monitor).

* :mod:`monitor.baselines.prada` — PRADA (Juuti et al., EuroS&P 2019), per client.
"""

from monitor.baselines.prada import PradaState

__all__ = ["PradaState"]
