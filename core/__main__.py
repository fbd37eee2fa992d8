"""``python -m core``: the command line, which lives in the ``cli`` package beside ``dashboard``."""

import gc
import sys

from cli.main import main

try:
    status = main()
finally:
    # The process ends here (a help text and argparse's errors end it from inside ``main``).
    # Frozen, the objects the command line made are not collected once more on the way out (a
    # third of a short command's time): the operating system frees them at once. The command
    # has closed its database connections and files; the standard streams are still flushed,
    # and exit handlers still run.
    gc.freeze()
sys.exit(status)
