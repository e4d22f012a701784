"""The locks cover pyproject.toml, hashed, and agree with each other on every version.

`make run` installs requirements.lock (the main dependencies and the build backend) with
`--require-hashes` and then the project with `--no-deps`; `make test` adds requirements-test.lock
(a superset: every extra too); `make ray` / `make notebook` add requirements-ray.lock /
requirements-notebook.lock (requirements.lock plus one extra). A dependency added to
pyproject.toml without `make lock` would silently be missing from a fresh venv, and a lock pinning
another version than the test lock would make the venv depend on the order of the installs.
These tests are what catch both.
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
TEST_LOCK = REPO / "requirements-test.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]

# lock -> the pyproject.toml groups it must cover
COVERS: dict[str, list[str]] = {
    "requirements.lock": ["main", "build"],
    "requirements-test.lock": ["main", "build", *EXTRAS],
    "requirements-ray.lock": ["main", "build", "ray"],
    "requirements-notebook.lock": ["main", "build", "notebook"],
}
# what the light install must not carry (the point of having two locks)
NOT_AT_RUN_TIME = ["pytest", "mypy", "hypothesis", "playwright", "ray", "jupyterlab", "mkdocs"]


def locked(lock: Path = LOCK) -> dict[str, str]:
    """Package name (canonical) -> pinned version, from a lockfile."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if m := PIN.match(line):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def group(name: str) -> list[str]:
    if name == "main":
        return list(PYPROJECT["project"]["dependencies"])
    if name == "build":
        return list(PYPROJECT["build-system"]["requires"])
    return list(EXTRAS[name])


def declared() -> list[tuple[str, Requirement]]:
    """(lock file, requirement) for every requirement each lock must pin."""
    return [
        (lock, Requirement(spec))
        for lock, groups in COVERS.items()
        for g in groups
        for spec in group(g)
    ]


def test_the_make_targets_install_these_locks() -> None:
    makefile = (REPO / "Makefile").read_text()
    for lock in COVERS:
        assert lock in makefile or lock.replace("ray", "%").replace("notebook", "%") in makefile


@pytest.mark.parametrize("lock", list(COVERS))
def test_lock_parses_into_hashed_pins(lock: str) -> None:
    pins = locked(REPO / lock)
    assert len(pins) > 20, f"{lock}: no `name==version` lines found"
    # the install is hash-checked: every pin must carry at least one hash
    text = (REPO / lock).read_text()
    assert text.count("--hash=sha256:") >= len(pins)
    # the lock names no index: installing it uses the installing machine's pip configuration
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links)", text, re.M)


@pytest.mark.parametrize(("lock", "req"), declared(), ids=lambda x: str(x))
def test_every_dependency_is_locked(lock: str, req: Requirement) -> None:
    if req.marker is not None and not req.marker.evaluate():
        pytest.skip(f"{req}: not for this platform")
    pins = locked(REPO / lock)
    name = canonicalize_name(req.name)
    assert name in pins, f"{req.name} is in pyproject.toml but not in {lock}: run `make lock`"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"{lock} pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}: "
        "run `make lock`"
    )


@pytest.mark.parametrize("lock", [lock for lock in COVERS if lock != TEST_LOCK.name])
def test_every_lock_is_within_the_test_lock(lock: str) -> None:
    """Same versions everywhere: the test lock is a superset of each other lock."""
    pins, superset = locked(REPO / lock), locked(TEST_LOCK)
    differ = {n: (v, superset.get(n)) for n, v in pins.items() if superset.get(n) != v}
    assert not differ, f"{lock} and {TEST_LOCK.name} disagree (run `make lock`): {differ}"


def test_the_run_time_lock_is_light() -> None:
    pins = locked(LOCK)
    heavy = [name for name in NOT_AT_RUN_TIME if name in pins]
    assert not heavy, f"{LOCK.name} holds test-time packages: {heavy}"
    assert set(NOT_AT_RUN_TIME) <= locked(TEST_LOCK).keys()
