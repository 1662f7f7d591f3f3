"""Shared fixtures: reference victims and their fitted profiles, built once per session."""

from __future__ import annotations

import warnings
from functools import cache

import pytest

from monitor import Profile
from victims import load_victim


@cache
def fitted(name: str, cross_fit_only: bool = False):
    """``(victim, profile)`` for a reference victim (cached for the whole session)."""
    victim = load_victim(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cross_fit_only:
            profile = Profile().fit(victim.model, victim.X_train, victim.y_train)
        else:
            profile = Profile().fit(victim.model, victim.X_train, victim.y_train,
                                    X_cal=victim.X_cal, y_cal=victim.y_cal)
    return victim, profile


@pytest.fixture(scope="session")
def victim():
    """The cancer-logreg reference victim: the default for tests that need just one.

    A test module may define its own ``victim`` fixture to use another.
    """
    return load_victim("cancer-logreg", seed=0)


@pytest.fixture(scope="session")
def profile(victim):
    """``victim``'s profile, fitted with its calibration split and feature names."""
    return Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                               X_cal=victim.X_cal, y_cal=victim.y_cal,
                               feature_names=victim.feature_names)


@pytest.fixture(scope="session")
def fitted_victim():
    """A function ``name -> (victim, profile)``."""
    return fitted
