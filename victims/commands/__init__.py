"""Commands of the test range's reference victims, registered with the ``extraction-monitor`` CLI
through the ``extraction_monitor.commands`` entry-point group (see pyproject.toml): ``serve``."""
