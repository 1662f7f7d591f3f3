"""Simulated API clients: benign users and model-extraction attacks.

Each attack is a client of a black-box :class:`Oracle` (a Python callable or the
HTTP endpoint) with a query budget; it records every query it sends and returns
what it stole, so its fidelity can be measured. Benign behaviours draw only from
the victim's public records.

>>> from victims import load_victim
>>> from attacks import Oracle, benign_streams
>>> v = load_victim("wine-tree", output_mode="label")
>>> o = Oracle(v.answer, budget=5)
>>> o(v.X_public[:2]).shape
(2,)
"""

from attacks.benign import BENIGN_BEHAVIOURS, benign_streams
from attacks.oracle import BudgetExhausted, HttpOracle, Oracle, answer_labels
from attacks.result import AttackResult
from attacks.streams import ClientStream, poisson_times, with_times
from attacks.synthetic import demo_clients, jbda, line_search, uniform_random

__all__ = [
    "BENIGN_BEHAVIOURS", "AttackResult", "BudgetExhausted", "ClientStream", "HttpOracle",
    "Oracle", "answer_labels", "benign_streams", "demo_clients", "jbda", "line_search",
    "poisson_times", "uniform_random", "with_times",
]
