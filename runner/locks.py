"""A run directory's locks: one runner per run directory (``RunLock``), or side-by-side
shards of one count (``ShardLock``), held by ``flock`` so the kernel lets go when the holder dies;
and ``set_aside`` (``--fresh``), which moves a run directory away under its lock. Imports
nothing of the runner, so ``runner.store`` re-exports it (and ``StoreError``, whose home it is).
"""

from __future__ import annotations

import os
from pathlib import Path


class StoreError(Exception):
    """The results directory cannot be used (not writable, disk full, ...)."""


LOCK = ".lock"


def shard_lock_name(shard_name: str) -> str:
    """A shard's own lock file: ``.lock-shard-2-of-8``."""
    return f"{LOCK}-shard-{shard_name}"


def _try_flock(path: Path, *, exclusive: bool) -> tuple[int, str | None]:
    """Open ``path`` and try its ``flock`` without waiting: ``(fd, None)`` when taken (the
    caller owns ``fd``); ``(-1, holder)`` when another process holds it, ``holder`` being what
    that process wrote there (its pid) or "another process"."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        return -1, holder
    return fd, None


def _sign(fd: int) -> None:
    """Write this process's pid into a lock file it holds, for the refusal message of others."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)


class RunLock:
    """One runner per run directory: an exclusive ``flock`` on ``.lock``, which the kernel
    releases when the holder dies, so a stale lock (kill -9, power loss) never blocks a resume.
    The file holds the holder's pid for the error message."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, holder = _try_flock(self.path, exclusive=True)
        if holder is not None:
            raise StoreError(
                f"{self.path.parent} is in use by a running runner ({holder}); "
                "wait for it to finish or stop it first"
            )
        _sign(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ShardLock:
    """A shard's hold on a run directory: a shared ``flock`` on ``.lock`` (shards run side by
    side; a single-process run or ``merge``, which take it exclusively, wait until none runs)
    and an exclusive one on its own ``.lock-shard-I-of-N`` (one process per shard). Shards of
    another count may not run at the same time: their jobs would overlap."""

    def __init__(self, run_dir: Path, index: int, count: int) -> None:
        self.run_dir = run_dir
        self.count = count
        self.path = run_dir / shard_lock_name(f"{index}-of-{count}")
        self._fds: list[int] = []

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            shared, holder = _try_flock(self.run_dir / LOCK, exclusive=False)
            if holder is not None:
                raise StoreError(
                    f"{self.run_dir} is in use by a single-process run or a merge "
                    f"({holder}); wait for it to finish or stop it first"
                )
            self._fds.append(shared)
            own, holder = _try_flock(self.path, exclusive=True)
            if holder is not None:
                raise StoreError(
                    f"shard {self.path.name.removeprefix(LOCK + '-shard-')} of {self.run_dir} "
                    f"is already running ({holder})"
                )
            self._fds.append(own)
            _sign(own)
            for other in self.run_dir.glob(f"{LOCK}-shard-*-of-*"):
                if other.name.endswith(f"-of-{self.count}"):
                    continue
                if _flock_held(other):
                    raise StoreError(
                        f"{self.run_dir} has shards of another count running ({other.name}): "
                        f"their jobs would overlap with {self.count} shard(s)"
                    )
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> ShardLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock_held(path: Path) -> bool:
    """Whether some process holds an ``flock`` on ``path`` (tried, and let go at once)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def set_aside(run_dir: Path, stamp: str) -> Path | None:
    """Move an existing run directory out of the way (``--fresh``); returns where it went."""
    if not run_dir.exists():
        return None
    with RunLock(run_dir):
        target = run_dir.with_name(f"{run_dir.name}.{stamp}")
        os.replace(run_dir, target)
    return target
