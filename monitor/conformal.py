"""Conformal p-values: how extreme a statistic is among calibration values.

Higher statistics are more suspicious. The p-value of ``s`` is
``(1 + #{calibration >= s}) / (n + 1)``: if the query and the ``n`` calibration
values are exchangeable, it is super-uniform, so ``P(p <= a) <= a``.

>>> import numpy as np
>>> from monitor.conformal import conformal_pvalues
>>> cal = np.sort(np.arange(99.0))
>>> conformal_pvalues(np.array([98.5, 50.0, -1.0]), cal)
array([0.01, 0.5 , 1.  ])
"""

from __future__ import annotations

import numpy as np


def conformal_pvalues(stats: np.ndarray, sorted_calibration: np.ndarray) -> np.ndarray:
    """Vectorised conformal p-values of ``stats`` against sorted calibration values."""
    n = len(sorted_calibration)
    n_at_least = n - np.searchsorted(sorted_calibration, stats, side="left")
    return (1.0 + n_at_least) / (n + 1.0)
