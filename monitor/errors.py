"""Errors the monitor raises on bad input."""


class InvalidInput(ValueError):
    """Rows or outputs the monitor cannot use; the message says what to fix.

    Raised before any state changes, so a rejected request loses nothing.
    """
