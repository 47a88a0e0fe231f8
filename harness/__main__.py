"""``python -m harness`` is the ``outlast`` command."""

from harness.cli import main

main()
