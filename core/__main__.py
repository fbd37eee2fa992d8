"""``python -m core``: the command line, which lives in the ``cli`` package beside ``dashboard``."""

import sys

from cli.main import main

sys.exit(main())
