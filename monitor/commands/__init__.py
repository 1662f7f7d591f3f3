"""Subcommands of the ``extraction-monitor`` CLI, one module each."""
