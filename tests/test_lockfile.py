"""The lockfile covers pyproject.toml: every dependency (main, test extra, build backend) is pinned.

`make venv` installs requirements.lock with `--require-hashes` and then the project with
`--no-deps`, so a dependency added to pyproject.toml without `make lock` would silently be
missing from a fresh venv. This test is what catches it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked() -> dict[str, str]:
    """Package name (canonical) -> pinned version, from the lockfile."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if m := PIN.match(line):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def declared() -> list[Requirement]:
    """The main dependencies, the test extra and the build backend's requirements."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    specs = [
        *data["project"]["dependencies"],
        *data["project"]["optional-dependencies"]["test"],
        *data["build-system"]["requires"],
    ]
    return [Requirement(s) for s in specs]


def test_lock_parses_into_pins() -> None:
    pins = locked()
    assert len(pins) > 20, f"{LOCK.name}: no `name==version` lines found"
    # the install is hash-checked: every pin must carry at least one hash
    text = LOCK.read_text()
    assert text.count("--hash=sha256:") >= len(pins)


@pytest.mark.parametrize("req", declared(), ids=str)
def test_every_dependency_is_locked(req: Requirement) -> None:
    if req.marker is not None and not req.marker.evaluate():
        pytest.skip(f"{req}: not for this platform")
    pins = locked()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req.name} is in pyproject.toml but not in {LOCK.name}: run `make lock`"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"{LOCK.name} pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}: "
        "run `make lock`"
    )
