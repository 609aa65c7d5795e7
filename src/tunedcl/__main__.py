"""``python -m tunedcl`` is the ``tunedcl`` command."""

import sys

from tunedcl.cli import main

sys.exit(main())
