"""``run --ray ADDRESS``: an existing Ray cluster, on 127.0.0.1 only.

- A head started apart by ``ray start --head`` (its own process group, its temp dir under the
  test's), the CLI joining it by address: every job once, the quota held at the server.
- A cluster of several nodes on one machine (Ray's own ``ray.cluster_utils.Cluster``): the
  shard actors on different nodes, every job once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import ray_helpers
from ray.cluster_utils import Cluster
from ray_helpers import every_job_once

from runner.cluster import SINGLE_NODE_ENV, is_loopback, loopback_only, run_on_ray
from runner.config import load_config
from runner.localapi.server import LocalAPI

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
QUOTA = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(path: Path, base_url: str, scenarios: int) -> Path:
    return ray_helpers.write_config(path, base_url, QUOTA, scenarios, new_turns_limit=4)


@pytest.fixture
def capped_api() -> Iterator[LocalAPI]:
    with ray_helpers.capped_api(QUOTA, 0.02) as server:
        yield server


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with ray_helpers.short_tmp(tmp_path_factory) as temp_dir:
        yield temp_dir


def stop_group(process: subprocess.Popen[str], marker: str) -> None:
    """The head and every process it started, and only those: its process group (a session
    of its own), then any process whose command line names the head's own temp dir."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture
def ray_token() -> str:
    """A token of the test's own: Ray 2.60 turns token authentication on for a cluster when
    ``~/.ray/auth_token`` exists, so the test says what it wants rather than inherit that."""
    return secrets.token_hex(32)


@pytest.fixture
def ray_head(short_tmp: Path, ray_token: str) -> Iterator[str]:
    """``ray start --head`` on 127.0.0.1 (2 CPUs), as an operator starts a cluster's head."""
    port = free_port()
    temp_dir = short_tmp
    env = {**os.environ, **ray_helpers.ray_env(temp_dir, ray_token), SINGLE_NODE_ENV: "0"}
    head = subprocess.Popen(
        [
            *(str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1"),
            *(f"--port={port}", "--num-cpus=2", "--include-dashboard=false"),
            *(f"--dashboard-port={free_port()}", "--disable-usage-stats"),
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the head is up once its GCS port answers
            assert head.poll() is None, "ray start --head exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head never listened"
                time.sleep(0.2)
        yield address
    finally:
        stop_group(head, str(temp_dir))


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1:6379") and is_loopback("localhost:6379")
    assert not is_loopback("10.0.0.5:6379") and not is_loopback("ray://127.0.0.1:10001")
    assert not is_loopback("local") and not is_loopback("auto")


def test_the_cli_runs_the_shards_on_an_existing_cluster_by_address(
    tmp_path: Path, capped_api: LocalAPI, ray_head: str, ray_token: str, short_tmp: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", capped_api.base_url, scenarios=12)
    # the cluster's token, as Ray documents it for a driver that joins
    env = {**os.environ, **ray_helpers.ray_env(short_tmp, ray_token)}
    env.pop(SINGLE_NODE_ENV, None)  # the runner keeps to the loopback by itself
    done = subprocess.run(
        [
            *(sys.executable, "-m", "runner", "run", str(config), "--ray", ray_head),
            *("--shards", "3", "--results", str(tmp_path / "r"), "--no-progress"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 shard(s) on Ray: 24 job(s) run" in done.stdout
    every_job_once(tmp_path / "r" / "ray", 24)
    stats = capped_api.stats()
    # one quota for the cluster, counted at the server: never above it, never refused
    assert stats["simulate_requests"] == 24 and stats["concurrency_rejections"] == 0
    assert stats["peak_in_flight"] <= QUOTA
    # the head is still there for the next run: the runner only left it
    socket.create_connection(("127.0.0.1", int(ray_head.rsplit(":", 1)[1])), timeout=2).close()


@pytest.fixture
def two_nodes(short_tmp: Path) -> Iterator[Cluster]:
    """A head and one more node (1 CPU each) on 127.0.0.1, by Ray's multi-node test harness."""
    with ray_helpers.ray_environment(short_tmp), loopback_only():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                # where RAY_TMPDIR puts it: the harness writes the cluster's address there
                "temp_dir": str(short_tmp / "ray"),
            },
        )
        try:
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


def test_shards_on_different_nodes_of_a_multi_node_cluster(
    tmp_path: Path, capped_api: LocalAPI, two_nodes: Cluster
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", capped_api.base_url, scenarios=10))
    nodes: list[Any] = []

    def record_nodes(actors: list[Any]) -> None:
        nodes.extend(n["NodeID"] for n in ray.nodes() if n["Alive"])

    outcome = run_on_ray(
        cfg,
        address=two_nodes.address,
        shards=2,
        results_root=tmp_path / "r",
        progress=False,
        base_url=capped_api.base_url,
        on_started=record_nodes,
    )
    assert outcome.merged is not None and outcome.merged.complete, outcome.message
    every_job_once(outcome.run_dir, 20)
    assert len(set(nodes)) == 2
    ran_on = [r["node_id"] for r in outcome.shard_results]
    assert len(set(ran_on)) == 2 and set(ran_on) == set(nodes)  # one shard on each node
    assert all(r["done"] > 0 for r in outcome.shard_results)
    stats = capped_api.stats()
    assert stats["simulate_requests"] == 20 and stats["peak_in_flight"] <= QUOTA
    assert stats["concurrency_rejections"] == 0
