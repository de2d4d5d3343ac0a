"""The ``movierec`` command: one module per command group, each a thin wrapper over the library.

:mod:`movierec.cli.console` holds what every command shares (one error exit, progress bars,
tables, JSON output).
"""

from movierec.cli.app import app, main

__all__ = ["app", "main"]
