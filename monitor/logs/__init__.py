"""Reading and validating query logs (CSV, JSON lines or a JSON array, Parquet) for offline
analysis.

A query log has one row per query the prediction API answered. Which column holds what is a
:class:`LogColumns` mapping; its defaults are:

- ``client_id`` — who asked (``client=``);
- an order column, ``seq`` or ``ts`` (if both are present ``seq`` wins; ``order=`` names
  another, ``time=`` a timestamp column that then orders the rows too); ``ts`` may be numeric
  or a date-time string and is kept as the query's time (``QueryLog.time``);
- the feature columns, named ``x_0 .. x_{d-1}`` or exactly like the training data; given the
  profile's :class:`~monitor.features.FeatureSchema` (``read_log(path, profile.schema_, ...)``)
  they may hold categories (text) and, where the model accepts them, missing values;
- optionally what the API returned: probabilities ``p_0 .. p_{k-1}`` (``proba=`` takes a
  glob pattern such as ``"prob_*"`` or a list of names, in class order) and/or a label
  ``pred`` (``label=``) — for a regressor (``n_classes=0``) ``pred`` is its predicted value.

Extra columns are ignored unless asked for (``keep=``, ``extra=``: carried along unscored in
``QueryLog.extra``). Rows with an unusable feature (inf; NaN where the model takes no missing
value; text in a numeric column) or probability, or a missing client/order/label, are skipped
and counted (per client), never fatal. Structural problems
(unknown file type, missing columns, wrong feature count) raise :class:`LogError` with a
one-line message that says what to fix and, for a missing column, names the column of the
file nearest to what was expected.

The API (every name below is importable from ``monitor.logs``), by module:

- ``monitor.logs.readers`` — :func:`read_log` reads, validates and sorts a whole log into a
  :class:`QueryLog`; :func:`iter_log_chunks` yields it in validated chunks (file order,
  memory bounded by :data:`DEFAULT_CHUNK_ROWS`); :func:`read_columns` reads unscored
  columns (ground truth) in the same row order;
- ``monitor.logs.querylog`` — :class:`QueryLog`, the validated log, and
  :func:`concat_logs`, which joins and sorts chunks;
- ``monitor.logs.columns`` — :class:`LogColumns` (:data:`DEFAULT_COLUMNS`), the default
  names :data:`CLIENT_COLUMN`, :data:`ORDER_COLUMNS`, :data:`TIME_COLUMN`,
  :data:`LABEL_COLUMN`, :data:`PROBA_PATTERN`, the detection of a file's columns, and
  :func:`nearest_column` for messages;
- ``monitor.logs.formats`` — :data:`LOG_FORMATS`, :func:`log_format`, :func:`is_json_array`,
  the files read as raw chunks of rows, and :func:`read_table` (a whole table, e.g. training
  data);
- ``monitor.logs.rows`` — one raw chunk turned into a :class:`QueryLog` (values checked,
  unusable rows skipped and counted);
- ``monitor.logs.errors`` — :class:`LogError`.

>>> import pandas as pd, tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "log.json"
>>> pd.DataFrame({"user": ["u1", "u2", "u1"], "timestamp": ["2024-05-01T10:00:00",
...               "2024-05-01T10:00:01", "2024-05-01T10:00:02"], "x_0": [0.1, 0.2, 0.3],
...               "prob_no": [0.9, 0.2, 0.4], "prob_yes": [0.1, 0.8, 0.6],
...               "request_id": ["r1", "r2", "r3"]}).to_json(path, orient="records")
>>> columns = LogColumns(client="user", time="timestamp", proba="prob_*", keep=("request_id",))
>>> log = read_log(path, ["x_0"], 2, columns=columns)
>>> log.clients(), log.extra["request_id"].tolist(), log.proba[:, 1].tolist()
(['u1', 'u2'], ['r1', 'r3', 'r2'], [0.1, 0.6, 0.8])
>>> read_log(path, ["x_0"], 2)
Traceback (most recent call last):
...
monitor.logs.LogError: log has no 'client_id' column (nearest: 'user'); name the column that says who sent each query with --client-column
"""

from monitor.logs.columns import (
    CLIENT_COLUMN,
    DEFAULT_COLUMNS,
    LABEL_COLUMN,
    ORDER_COLUMNS,
    PROBA_PATTERN,
    TIME_COLUMN,
    LogColumns,
    nearest_column,
)
from monitor.logs.errors import LogError
from monitor.logs.formats import LOG_FORMATS, is_json_array, log_format, read_table
from monitor.logs.querylog import QueryLog, concat_logs
from monitor.logs.readers import DEFAULT_CHUNK_ROWS, iter_log_chunks, read_columns, read_log

__all__ = [
    "CLIENT_COLUMN", "DEFAULT_CHUNK_ROWS", "DEFAULT_COLUMNS", "LABEL_COLUMN", "LOG_FORMATS",
    "ORDER_COLUMNS", "PROBA_PATTERN", "TIME_COLUMN", "LogColumns", "LogError", "QueryLog",
    "concat_logs", "is_json_array", "iter_log_chunks", "log_format", "nearest_column",
    "read_columns", "read_log", "read_table",
]
