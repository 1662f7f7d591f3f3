"""Reference victim models on datasets that ship with scikit-learn.

Each victim is deterministic (seeded), trains in seconds, and keeps fixed
train / calibration / public splits: the model is fitted on ``train``,
``calibration`` is held out for the monitor's profile, and ``public`` is what
benign users and some attackers draw from. A victim's input space is the
dataset's raw feature space exactly as scikit-learn loads it; any scaling lives
inside the model pipeline.

>>> from victims import load_victim
>>> v = load_victim("cancer-logreg")
>>> v.X_train.shape[1], len(v.classes)
(30, 2)
>>> v.answer(v.X_public[:2]).shape
(2, 2)
"""

from victims.registry import (
    ALL_VICTIMS,
    EXTRA_VICTIMS,
    OUTPUT_MODES,
    REGRESSION_VICTIMS,
    VICTIMS,
    Victim,
    load_victim,
)

__all__ = ["ALL_VICTIMS", "EXTRA_VICTIMS", "OUTPUT_MODES", "REGRESSION_VICTIMS", "VICTIMS",
           "Victim", "load_victim"]
