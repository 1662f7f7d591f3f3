"""Which column of a log holds what: the :class:`LogColumns` mapping and its defaults, and
the detection of the columns of a file (:func:`_plan`): client, order, time, features,
probabilities, label and kept columns, with the 'nearest column' of a one-line
:class:`~monitor.logs.LogError` when one is missing (:func:`nearest_column`).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from monitor.logs.errors import LogError

CLIENT_COLUMN = "client_id"
ORDER_COLUMNS = ("seq", "ts")
TIME_COLUMN = "ts"
LABEL_COLUMN = "pred"
PROBA_PATTERN = "p_*"

_HINTS = {
    "client": ("client", "user", "account", "key", "caller", "customer", "tenant", "ip",
               "principal", "session", "id"),
    "order": ("seq", "order", "index", "idx", "num", "count", "ts", "time", "date", "stamp"),
    "time": ("ts", "time", "date", "stamp", "when", "at"),
    "proba": ("prob", "proba", "p_", "score", "conf", "likelihood"),
    "label": ("pred", "label", "class", "answer", "output", "y"),
}
"""Name fragments that suggest a column's role, for the 'nearest column' in errors."""


@dataclass(frozen=True)
class LogColumns:
    """Which columns of a log hold what (every field optional; see :mod:`monitor.logs`).

    ``proba`` is a glob pattern (``"prob_*"``; matches ordered by their numeric suffix when
    every match has one, else as in the file) or a sequence of names in class order.
    ``keep`` names columns carried along to the verdict table (``analyze --keep``).
    ``classes`` are the profile's class labels (:meth:`for_classes`): given them, the columns
    ``proba`` picks are put in the profile's class order by their names — each name is one
    prefix or suffix shared by all of them plus a class label (``prob_benign``) or a class
    index (``prob_0``) — and a :class:`~monitor.logs.LogError` says so when the names do not
    map to the classes.

    >>> LogColumns.parse_proba("prob_*"), LogColumns.parse_proba("pa, pb")
    ('prob_*', ('pa', 'pb'))
    >>> LogColumns.from_dict(LogColumns(client="user", keep=("a",)).to_dict()).keep
    ('a',)
    >>> LogColumns(proba=("p_yes", "p_no")).for_classes(["no", "yes"]).classes
    ('no', 'yes')
    """

    client: str = CLIENT_COLUMN
    order: str | None = None
    time: str | None = None
    proba: str | tuple[str, ...] | None = None
    label: str | None = None
    keep: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None

    def for_classes(self, classes) -> LogColumns:
        """This mapping, checking (and ordering) probability columns against ``classes``."""
        from dataclasses import replace

        return replace(self, classes=tuple(_class_text(c) for c in classes))

    @staticmethod
    def parse_proba(text: str | None) -> str | tuple[str, ...] | None:
        """``--proba-columns`` text: a glob pattern, or comma-separated names."""
        if text is None or not text.strip():
            return None
        if "," in text:
            return tuple(t.strip() for t in text.split(",") if t.strip())
        return text.strip()

    def to_dict(self) -> dict:
        """Plain values (for a Dask task or a manifest)."""
        out = asdict(self)
        out["proba"] = list(self.proba) if isinstance(self.proba, tuple) else self.proba
        out["keep"] = list(self.keep)
        out["classes"] = None if self.classes is None else list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> LogColumns:
        """The inverse of :meth:`to_dict` (``None``: the defaults)."""
        data = dict(data or {})
        proba = data.get("proba")
        data["proba"] = tuple(proba) if isinstance(proba, list) else proba
        data["keep"] = tuple(data.get("keep") or ())
        classes = data.get("classes")
        data["classes"] = None if classes is None else tuple(classes)
        return cls(**data)

    def describe(self) -> str:
        """The mapping in a few words, for messages."""
        proba = ",".join(self.proba) if isinstance(self.proba, tuple) else self.proba
        parts = [f"client={self.client}"]
        parts += [f"{k}={v}" for k, v in (("order", self.order), ("time", self.time),
                                          ("proba", proba), ("label", self.label)) if v]
        return " ".join(parts)


DEFAULT_COLUMNS = LogColumns()


@dataclass(frozen=True)
class _ColumnPlan:
    """Which columns of the file hold what."""

    client: str
    features: list[str]
    order: str
    proba: list[str]
    label: str | None
    extra: list[str] = field(default_factory=list)
    time: str | None = None
    schema: object | None = None
    regression: bool = False

    @property
    def needed(self) -> list[str]:
        cols = [self.client, self.order, *self.features, *self.proba]
        cols += [self.label] if self.label else []
        cols += [self.time] if self.time and self.time not in cols else []
        return cols + [c for c in self.extra if c not in cols]


def _feature_columns(columns: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    present = set(columns)
    d = len(feature_names)
    positional = [f"x_{j}" for j in range(d)]
    n_x = sum(1 for c in columns if c.startswith("x_") and c[2:].isdigit())
    for candidate in (positional, list(feature_names)):
        if all(c in present for c in candidate) and (candidate is not positional or n_x == d):
            return candidate
    if n_x:
        missing = [c for c in positional if c not in present]
        extra = n_x - (d - len(missing))
        fixes = [f"add {_short(missing)}"] if missing else []
        fixes += [f"drop the {extra} column(s) beyond x_{d - 1}"] if extra > 0 else []
        raise LogError(
            f"log has {n_x} feature columns x_* but the profile expects {d} (x_0..x_{d - 1}); "
            + " and ".join(fixes)
        )
    missing = [c for c in feature_names if c not in present]
    raise LogError(
        f"log is missing feature columns {_short(missing)}; name the {d} features "
        f"x_0..x_{d - 1} or exactly as in the training data"
    )


def _short(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def nearest_column(expected: str, columns: Sequence[str], role: str | None = None,
                   exclude: Sequence[str] = ()) -> str | None:
    """The column of ``columns`` most like ``expected`` (or like the ``role``'s usual names),
    or None when nothing is close.

    >>> nearest_column("client_id", ["user", "timestamp", "x_0"], role="client")
    'user'
    >>> nearest_column("seq", ["a", "b"], role="order") is None
    True
    """
    pool = [c for c in map(str, columns) if c not in set(exclude)]
    close = difflib.get_close_matches(expected, pool, n=1, cutoff=0.6)
    if close:
        return close[0]
    hints = _HINTS.get(role or "", ())
    hinted = [c for c in pool if any(h in c.lower() for h in hints)]
    if hinted:
        return max(hinted, key=lambda c: (
            c.lower() in hints,
            max(len(h) for h in hints if h in c.lower()),
            -len(c),
            difflib.SequenceMatcher(None, expected, c.lower()).ratio()))
    close = difflib.get_close_matches(expected, pool, n=1, cutoff=0.4)
    return close[0] if close else None


def _nearest_note(expected: str, columns: Sequence[str], role: str,
                  exclude: Sequence[str] = ()) -> str:
    near = nearest_column(expected, columns, role, exclude)
    return f" (nearest: {near!r})" if near else ""


def _require(name: str, present: Sequence[str], role: str, flag: str, what: str) -> None:
    if name not in set(present):
        raise LogError(f"log has no column {name!r} for {what}"
                       f"{_nearest_note(name, present, role)}; fix {flag}")


def _class_text(label) -> str:
    """A class label as a column name would hold it (``1.0`` as ``1``)."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    if hasattr(label, "item"):  # numpy scalar
        return _class_text(label.item())
    return str(label)


def _keyed(names: Sequence[str], keys: Sequence[str]) -> list[int] | None:
    """Position in ``keys`` of each name, when every name is one shared prefix + a distinct
    key, or a distinct key + one shared suffix; else None.

    >>> _keyed(["prob_yes", "prob_no"], ["no", "yes"]), _keyed(["no_p", "yes_p"], ["no", "yes"])
    ([1, 0], [0, 1])
    >>> _keyed(["pa", "pb"], ["0", "1"]) is None
    True
    """
    if len(names) != len(keys) or len(set(keys)) != len(keys):
        return None
    first = names[0]
    affixes = ([(first[:-len(key)], "") for key in keys if key and first.endswith(key)]
               + [("", first[len(key):]) for key in keys if key and first.startswith(key)])
    for head, tail in affixes:  # (shared prefix, shared suffix) candidates
        got = [n[len(head):len(n) - len(tail)]
               if n.startswith(head) and n.endswith(tail) and len(n) > len(head) + len(tail)
               else None for n in names]
        if None not in got and sorted(got) == sorted(keys):
            return [list(keys).index(g) for g in got]
    return None


def _in_class_order(names: list[str], classes: Sequence[str]) -> list[str]:
    """``names`` (one probability column per class) in the order of ``classes``: mapped by
    class label, else by class index; a LogError when they map to neither."""
    for keys in (list(classes), [str(j) for j in range(len(classes))]):
        at = _keyed(names, keys)
        if at is not None:
            ordered = [""] * len(names)
            for name, j in zip(names, at, strict=True):
                ordered[j] = name
            return ordered
    labels = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    raise LogError(
        f"--proba-columns {_short(names)} do not name the profile's classes ({labels}): "
        "the order of probability columns decides which class each one is; name them a "
        "shared prefix or suffix plus each class label (e.g. "
        f"'prob_{classes[0]}') or class index (e.g. 'prob_0')")


def _proba_columns(columns: list[str], spec, n_classes: int, taken: Sequence[str],
                   classes: Sequence[str] | None = None) -> list[str]:
    """The probability columns in class order, or [] when the log has none (given
    ``classes``, a column picked by ``spec`` is put in their order by its name)."""
    if isinstance(spec, tuple | list):
        missing = [c for c in spec if c not in set(columns)]
        if missing:
            raise LogError(f"log has no probability column {missing[0]!r}"
                           f"{_nearest_note(missing[0], columns, 'proba', taken)}; "
                           "fix --proba-columns")
        names = list(spec)
    else:
        pattern = spec or PROBA_PATTERN
        names = [c for c in columns if fnmatch.fnmatchcase(c, pattern) and c not in taken]
        if spec is None:  # the default p_0..p_{k-1}: only numbered columns
            names = [c for c in names if c[2:].isdigit()]
        suffixes = [re.search(r"(\d+)$", c) for c in names]
        if names and all(suffixes):
            names = [c for _, c in sorted(zip([int(s.group(1)) for s in suffixes], names,
                                              strict=True))]
        if not names:
            if spec is None:
                return []
            near = nearest_column(pattern.replace("*", ""), columns, "proba", taken)
            guess = re.sub(r"[^_\W]*\d+$", "*", near) if near else None
            raise LogError(f"no column matches --proba-columns {pattern!r}"
                           + (f" (nearest: {near!r}; try {guess!r})" if near else "")
                           + "; give a glob pattern such as 'prob_*' or a list of names")
        if spec is None and names != [f"p_{j}" for j in range(n_classes)]:
            raise LogError(
                f"log has probability columns {_short(names)} but the profile has "
                f"{n_classes} classes; provide exactly p_0..p_{n_classes - 1} or none"
            )
    if len(names) != n_classes:
        raise LogError(f"--proba-columns picked {len(names)} column(s) ({_short(names)}) but "
                       f"the profile has {n_classes} classes; name one column per class, in "
                       "class order")
    if spec is not None and classes is not None:
        names = _in_class_order(names, classes)
    return names


def _names_and_schema(features) -> tuple[list[str], object | None]:
    """Feature names, and the schema when ``features`` is a FeatureSchema."""
    names = getattr(features, "names", None)
    if names is not None and hasattr(features, "encode"):
        return list(names), features
    return [str(f) for f in features], None


def _plan(columns: Sequence[str], feature_names, n_classes: int,
          extra: Sequence[str] = (), mapping: LogColumns | None = None) -> _ColumnPlan:
    feature_names, schema = _names_and_schema(feature_names)
    columns = [str(c) for c in columns]
    present = set(columns)
    m = mapping or DEFAULT_COLUMNS
    if m.client not in present:
        raise LogError(f"log has no '{m.client}' column"
                       f"{_nearest_note(m.client, columns, 'client')}; name the column that "
                       "says who sent each query with --client-column")
    if m.order is not None:
        _require(m.order, columns, "order", "--order-column", "the query order")
    if m.time is not None:
        _require(m.time, columns, "time", "--time-column", "the query time")
    order = m.order or m.time or next((c for c in ORDER_COLUMNS if c in present), None)
    if order is None:
        near = _nearest_note("seq", columns, "order", [m.client])
        raise LogError(f"log has no order column{near}; add 'seq' (query number) or 'ts' "
                       "(timestamp), or name yours with --order-column / --time-column")
    time = m.time or (TIME_COLUMN if TIME_COLUMN in present else None)
    features = _feature_columns(columns, feature_names)
    taken = [m.client, order, *features]
    if n_classes == 0 and m.proba is not None:
        raise LogError("the profile is of a regressor: its log has no probability columns; "
                       "name the column of predicted values with --label-column (default: pred)")
    proba = _proba_columns(columns, m.proba, n_classes, taken, m.classes) if n_classes else []
    if m.label is not None:
        _require(m.label, columns, "label", "--label-column", "the returned label")
    label = m.label or (LABEL_COLUMN if LABEL_COLUMN in present else None)
    for col in m.keep:
        _require(col, columns, "", "--keep", "--keep")
    wanted = [*m.keep, *(c for c in extra if c in present and c not in m.keep)]
    return _ColumnPlan(client=m.client, features=features, order=order, proba=proba,
                       label=label, extra=wanted, time=time, schema=schema,
                       regression=n_classes == 0)
