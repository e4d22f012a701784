"""kill -9 at random instants never makes anyone pay twice for a finished simulation.

Measured from outside, as a user would: a small stand-in server (not the local API and its
fault machinery) streams each simulation over about a second and counts, per request body,
the simulations it delivered in full. The runner (a subprocess, concurrency 16) is killed
with SIGKILL at random instants, then run to completion; every job must be stored exactly
once, and no simulation delivered in full may be bought again, except one whose last bytes
were still on the wire at the kill.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from runner.store import load_run

ROOT = Path(__file__).resolve().parents[1]
JOBS = 300
KILLS = 10
FRAMES = 10
FRAME_GAP = 0.1  # ten frames a tenth of a second apart: about a second per simulation
ON_THE_WIRE = 0.2
"""Seconds before a kill within which a delivery counts as not yet received: loopback takes
microseconds, but on a loaded 2-core machine the runner may not be scheduled for a while after
the last bytes land in its socket, and bytes it never read are no simulation it could keep (a
full make test beside other work once saw 14 such deliveries end over 20 ms before a kill). A
fifth of a simulation's second: anything the runner held longer must be kept."""
AFTER_KILL = 1.0
"""Seconds after a kill during which the server may still write into the dead connection."""


def frame_line(frame: dict[str, object]) -> bytes:
    return (json.dumps(json.dumps(frame)) + "\n").encode()


class StandIn:
    """A bare asyncio HTTP/1.1 server streaming simulations, counting full deliveries."""

    def __init__(self) -> None:
        self.delivered: Counter[str] = Counter()
        self.delivered_at: dict[str, list[float]] = {}
        self.started: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if not head.split(b" ", 2)[1].endswith(b"/simulate-conversation/stream"):
                    # anything else (the runner's cost estimate asks the calculate endpoint)
                    # is not a simulation: this stand-in does not know it
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                await self._simulate(hashlib.sha256(body).hexdigest(), writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _simulate(self, key: str, writer: asyncio.StreamWriter) -> None:
        with self.lock:
            self.started[key] += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for i in range(FRAMES):
            await asyncio.sleep(FRAME_GAP)
            message = {"role": "agent" if i % 2 else "user", "message": f"turn {i}"}
            line = frame_line({"simulated_conversation": [{**message, "time_in_call_secs": i}]})
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
        analysis = {"call_successful": "success", "transcript_summary": "done"}
        line = frame_line({"simulated_conversation": None, "analysis": analysis})
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(line), line))
        await writer.drain()
        with self.lock:
            self.delivered[key] += 1
            self.delivered_at.setdefault(key, []).append(time.monotonic())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


def write_config(tmp_path: Path, port: int) -> Path:
    rows = [{"id": f"s{i:03d}", "prompt": f"You are customer {i}."} for i in range(JOBS)]
    (tmp_path / "scenarios.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = {
        "target": {
            "base_url": f"http://127.0.0.1:{port}",
            "timeouts": {"first_byte": 10, "idle": 10, "total": 60},
        },
        "run": {"name": "paid", "concurrency": 16, "new_turns_limit": FRAMES},
        "agents": [{"id": "agent_support"}],
        "scenarios": [{"file": "scenarios.jsonl"}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_random_instants_pays_for_nothing_twice(
    tmp_path: Path, stand_in: StandIn
) -> None:
    config = write_config(tmp_path, stand_in.port)
    command = [
        sys.executable,
        *("-m", "runner", "run", str(config), "--results", str(tmp_path), "--no-progress"),
        "--no-preflight",  # the stand-in serves the simulate endpoint only
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(19)
    kills = 0
    killed_at: list[float] = []
    for _ in range(KILLS):
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # at a random instant once simulations are under way (start-up takes ~1 s)
        time.sleep(rng.uniform(1.5, 4.0))
        if process.poll() is None:
            killed_at.append(time.monotonic())
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(30)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    run = load_run(tmp_path / "paid")
    assert isinstance(run.jobs, pl.DataFrame)
    assert run.jobs.height == JOBS and run.jobs["job_key"].n_unique() == JOBS  # each once
    assert set(run.jobs["status"]) == {"ok"}
    assert run.messages.group_by("job_key", "index").len()["len"].max() == 1
    with stand_in.lock:
        delivered = dict(stand_in.delivered)
    assert len(delivered) == JOBS  # every simulation was delivered in full at least once
    paid_twice = sum(n - 1 for n in delivered.values())
    # A simulation delivered twice is excused only when its first delivery ended at a kill: its
    # last bytes were still on the wire (or written into a connection the kill had closed).
    # Anything that ended earlier was the runner's to keep.
    with stand_in.lock:
        first_ends = {k: times[0] for k, times in stand_in.delivered_at.items() if len(times) > 1}
    unexcused = [
        key
        for key, end in first_ends.items()
        if not any(-ON_THE_WIRE <= end - kill <= AFTER_KILL for kill in killed_at)
    ]
    # how long before the nearest kill each twice-delivered simulation's first delivery ended
    before_kill = sorted(
        round(min((kill - end for kill in killed_at if kill >= end - AFTER_KILL), default=-1), 3)
        for end in first_ends.values()
    )
    assert run.manifest is not None
    recovered = sum(s.recovered for s in run.manifest.sessions)
    print(
        f"\n{kills} kills: {paid_twice} simulation(s) delivered twice "
        f"({len(unexcused)} finished before a kill), {recovered} recovered from the journal; "
        f"first deliveries ended this long before a kill (s): {before_kill}"
    )
    assert kills >= KILLS - 1
    assert recovered > 0  # the journal did the work: jobs finished between two flushes
    assert unexcused == []
