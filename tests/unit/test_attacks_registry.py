"""Every registered attack runs within its budget and records exactly what it sent."""

import numpy as np
import pytest

from attacks.oracle import Oracle
from attacks.registry import ATTACKS, load_target, run_attack


def _cases():
    for name, spec in ATTACKS.items():
        victim = "cancer-logreg" if "cancer-logreg" in spec.applies_to else spec.applies_to[0]
        yield name, victim, spec.output_modes[-1]


@pytest.mark.parametrize(("name", "victim_name", "mode"), list(_cases()))
def test_attack_stays_in_budget_and_records_queries(name, victim_name, mode):
    v = load_target(victim_name, mode)
    budget = {"path-finding": 400, "mlp-equation-solving": 150}.get(name, 80)
    oracle = Oracle(v.answer, budget)
    result = run_attack(name, v, budget=budget, seed=0, oracle=oracle)
    assert 0 < result.n_queries <= budget
    assert result.stream.is_attack and result.stream.kind
    np.testing.assert_array_equal(result.stream.X, oracle.queries)
    assert len(result.answers) == result.n_queries
    assert result.surrogate.predict(v.X_public[:5]).shape == (5,)


def test_unknown_attack_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown attack"):
        run_attack("nope", load_target("wine-tree"))
