"""Black-box prediction oracles with a query budget that record every query."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class BudgetExhausted(RuntimeError):
    """Raised when a query batch would exceed the oracle's budget."""


class Oracle:
    """A prediction API seen as a black box: rows in, the API's outputs out.

    Every answered row is recorded (``queries``, ``answers``); a batch that would
    go over ``budget`` raises :class:`BudgetExhausted` and is not answered.

    >>> import numpy as np
    >>> o = Oracle(lambda X: (X.sum(axis=1) > 0).astype(int), budget=3)
    >>> o(np.array([[1.0, 2.0], [-3.0, 1.0]])).tolist()
    [1, 0]
    >>> o.n_queries, o.remaining
    (2, 1)
    >>> o(np.zeros((2, 2)))
    Traceback (most recent call last):
    ...
    attacks.oracle.BudgetExhausted: batch of 2 rows exceeds the remaining budget of 1 (budget 3)
    """

    def __init__(self, answer_fn: Callable[[np.ndarray], np.ndarray], budget: int) -> None:
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.answer_fn = answer_fn
        self.budget = int(budget)
        self._queries: list[np.ndarray] = []
        self._answers: list[np.ndarray] = []
        self.n_queries = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.n_queries

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if len(X) > self.remaining:
            raise BudgetExhausted(
                f"batch of {len(X)} rows exceeds the remaining budget of {self.remaining} "
                f"(budget {self.budget})"
            )
        if len(X) == 0:
            return np.empty((0,))
        answers = np.asarray(self.answer_fn(X))
        if len(answers) != len(X):
            raise RuntimeError(f"oracle returned {len(answers)} answers for {len(X)} rows")
        self._queries.append(X.copy())
        self._answers.append(answers)
        self.n_queries += len(X)
        return answers

    @property
    def queries(self) -> np.ndarray:
        """All answered rows, in send order, shape ``(n_queries, d)``."""
        if not self._queries:
            return np.empty((0, 0))
        return np.concatenate(self._queries)

    @property
    def answers(self) -> np.ndarray:
        """All answers in send order: ``(n, k)`` probabilities or ``(n,)`` labels."""
        if not self._answers:
            return np.empty((0,))
        return np.concatenate(self._answers)


class HttpOracle(Oracle):
    """An :class:`Oracle` that POSTs ``{"instances": rows}`` to a served model.

    Sends header ``X-API-Key`` and reads ``{"predictions": ...}``; an HTTP error
    status raises ``httpx.HTTPStatusError``.

    >>> o = HttpOracle("http://127.0.0.1:9/predict", api_key="k", budget=10)
    >>> o.remaining
    10
    """

    def __init__(self, url: str, api_key: str | None = None, budget: int = 1000,
                 timeout: float = 30.0) -> None:
        import httpx

        self.url = url
        headers = {"X-API-Key": api_key} if api_key is not None else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        super().__init__(self._post, budget)

    def _post(self, X: np.ndarray) -> np.ndarray:
        response = self._client.post(self.url, json={"instances": X.tolist()})
        response.raise_for_status()
        return np.asarray(response.json()["predictions"])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def answer_labels(answers: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Predicted labels from oracle answers: the class (index when ``classes`` is None)
    of the largest probability, or the labels as given."""
    answers = np.asarray(answers)
    if answers.ndim == 2:
        top = answers.argmax(axis=1)
        return top if classes is None else np.asarray(classes)[top]
    return answers
