"""Export simulated client streams as a query log that ``extraction-monitor analyze`` reads.

Columns: ``client_id``, ``seq`` (0..n-1 per client), ``ts``, features ``x_0..x_{d-1}``,
the victim's answers (``p_0..p_{k-1}`` when it returns probabilities, ``pred``
always), and ground truth ``truth_kind`` / ``truth_is_attack`` that the monitor
never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from attacks.streams import ClientStream

TRUTH_PREFIX = "truth_"


def to_log(streams: Sequence[ClientStream], victim) -> pd.DataFrame:
    """One row per query, streams interleaved by send time (``ts``, then client order).

    >>> from victims import load_victim
    >>> from attacks.benign import benign_streams
    >>> v = load_victim("wine-tree")
    >>> df = to_log(benign_streams(v, n=5)[:2], v)
    >>> list(df.columns[:4]), df.shape
    (['client_id', 'seq', 'ts', 'x_0'], (10, 22))
    """
    if not streams:
        raise ValueError("no streams to export")
    d = victim.n_features
    for s in streams:
        if s.X.shape[1] != d:
            raise ValueError(f"stream {s.client_id!r} has {s.X.shape[1]} features; victim has {d}")
    X = np.concatenate([s.X for s in streams])
    frame = pd.DataFrame({
        "client_id": np.concatenate([[s.client_id] * s.n_queries for s in streams]),
        "seq": np.concatenate([np.arange(s.n_queries) for s in streams]),
        "ts": np.concatenate([s.timestamps() for s in streams]),
    })
    features = pd.DataFrame(X, columns=[f"x_{j}" for j in range(d)])
    answers = np.asarray(victim.answer(X))
    outputs = {}
    if answers.ndim == 2:
        outputs.update({f"p_{j}": answers[:, j] for j in range(answers.shape[1])})
        outputs["pred"] = np.asarray(victim.classes)[answers.argmax(axis=1)]
    else:
        outputs["pred"] = answers
    truth = pd.DataFrame({
        f"{TRUTH_PREFIX}kind": np.concatenate([[s.kind] * s.n_queries for s in streams]),
        f"{TRUTH_PREFIX}is_attack": np.concatenate([[s.is_attack] * s.n_queries for s in streams]),
    })
    df = pd.concat([frame, features, pd.DataFrame(outputs), truth], axis=1)
    order = np.lexsort((df["seq"].to_numpy(), df["ts"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def write_log(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as ``.csv``, ``.jsonl`` or ``.parquet`` (chosen by the extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, double_precision=15)
    elif suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path.name}: unknown log type {suffix!r}; use .csv, .jsonl or .parquet")
    return path


def read_log(path: str | Path) -> pd.DataFrame:
    """Read a log written by :func:`write_log` back into a DataFrame."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"client_id": str})
    if suffix == ".jsonl":
        return pd.read_json(path, orient="records", lines=True, dtype={"client_id": str})
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path.name}: unknown log type {suffix!r}; use .csv, .jsonl or .parquet")
