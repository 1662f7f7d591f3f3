"""Loading and saving the victim model: skops (safe, with a trusted-types list) or joblib.

Loading a joblib/pickle file runs arbitrary code stored in it: only load such files from a
source you trust. A ``.skops`` file is inspected first; types outside skops' default trusted
set are refused unless you list them in ``trusted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SKOPS_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class ModelLoadError(ValueError):
    """The model file cannot be used; the message says what to fix."""


def model_format(path: str | Path) -> str:
    """``skops`` or ``joblib`` from the file extension."""
    suffix = Path(path).suffix.lower()
    if suffix in SKOPS_SUFFIXES:
        return "skops"
    if suffix in PICKLE_SUFFIXES:
        return "joblib"
    known = ", ".join(SKOPS_SUFFIXES + PICKLE_SUFFIXES)
    raise ModelLoadError(f"{Path(path).name}: unknown model file type; use one of {known}")


def untrusted_types(path: str | Path) -> list[str]:
    """Types in a ``.skops`` file that skops does not trust by default."""
    import skops.io as sio

    return list(sio.get_untrusted_types(file=Path(path)))


def load_model(path: str | Path, trusted: Sequence[str] = ()) -> Any:
    """Load a classifier with ``predict_proba`` from a skops or joblib file.

    ``trusted`` lists extra type names a ``.skops`` file may contain (see
    :func:`untrusted_types`); it is ignored for joblib, which trusts the file entirely.

    >>> import tempfile, pathlib
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    >>> path = save_model(model, pathlib.Path(tempfile.mkdtemp()) / "m.skops")
    >>> load_model(path).predict([[0.9]])
    array([1])
    """
    path = Path(path)
    fmt = model_format(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    if fmt == "skops":
        import skops.io as sio

        try:
            unknown = sorted(set(untrusted_types(path)) - set(trusted))
            if unknown:
                raise ModelLoadError(
                    f"{path.name} contains types skops does not trust by default: "
                    f"{', '.join(unknown)}; if you trust them pass --trust for each"
                )
            model = sio.load(path, trusted=list(trusted) or None)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: cannot load skops model: {_first_line(exc)}") from exc
    else:
        import joblib

        try:
            model = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: cannot load joblib model: {_first_line(exc)}") from exc
    if not hasattr(model, "predict"):
        raise ModelLoadError(
            f"{path.name} holds a {type(model).__name__}, not a fitted classifier with "
            "predict_proba, decision_function or predict, nor a fitted regressor; save the "
            "fitted model (or pipeline) itself"
        )
    return model


def save_model(model: Any, path: str | Path) -> Path:
    """Save ``model`` as skops or joblib according to the extension of ``path``."""
    path = Path(path)
    if model_format(path) == "skops":
        import skops.io as sio

        sio.dump(model, path)
    else:
        import joblib

        joblib.dump(model, path)
    return path


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = ["ModelLoadError", "load_model", "model_format", "save_model", "untrusted_types"]
