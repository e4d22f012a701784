"""The suite writes nothing under the user's ``HOME``: conftest moves it to a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def test_home_is_a_temporary_directory_for_every_child() -> None:
    real = Path(os.environ["RUNNER_TESTS_REAL_HOME"])
    home = Path(os.environ["HOME"])
    assert home != real and home.is_relative_to(tempfile.gettempdir())
    seen = subprocess.run(
        [sys.executable, "-c", "import os; print(os.path.expanduser('~'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(seen) == home
    assert not any(name in os.environ for name in ("XDG_CACHE_HOME", "MPLCONFIGDIR"))
