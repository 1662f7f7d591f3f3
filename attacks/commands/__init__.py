"""Commands of the test range, registered with the ``extraction-monitor`` CLI through the
``extraction_monitor.commands`` entry-point group (see pyproject.toml): ``demo`` and ``bench``."""
