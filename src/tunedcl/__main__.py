"""``python -m tunedcl`` is the ``tunedcl`` command."""

from tunedcl.cli import run_and_exit

run_and_exit()
