"""``python -m runner``."""

import os
import sys

from runner.cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # e.g. `... --dry-run | head`: the reader left; not an error worth a trace
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
