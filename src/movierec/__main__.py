"""``python -m movierec``: the same as the ``movierec`` command."""

from movierec.cli import main

main()
