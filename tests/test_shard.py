"""Shards: the split, the locks, N shard processes + ``merge`` against one process, a killed
shard resuming, ``merge`` naming what is missing.

The end-to-end tests count at the server (a local API per side, on 127.0.0.1) what was sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml

from runner.backends.agent_testing import repeat_window, variant_hash
from runner.backends.agent_testing import test_spec as spec_of
from runner.config import load_config
from runner.gate import EXIT_PASSED
from runner.jobs import Job, iter_jobs
from runner.localapi.server import local_api_process
from runner.plan import sweep_jobs
from runner.shard import (
    Shard,
    ShardError,
    parse_shard,
    resolve_shard,
    shard_for_run,
    shard_from_env,
    shard_of,
    split_groups,
)
from runner.store import (
    TMP_PREFIX,
    RunLock,
    ShardLock,
    StoreError,
    done_job_keys,
    load_run,
    read_manifest,
)
from runner.view.server import viewer_process

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "example.yaml"

# ------------------------------------------------------------------------------ the split


@pytest.mark.parametrize("n", range(1, 8))
def test_the_split_covers_every_job_exactly_once(n: int) -> None:
    cfg = load_config(EXAMPLE)
    every = [job.key for job in iter_jobs(cfg)]
    shards = [[job.key for job in sweep_jobs(cfg, None, Shard(i, n))] for i in range(n)]
    assert sorted(k for shard in shards for k in shard) == sorted(every)
    assert sum(len(s) for s in shards) == len(every)  # disjoint: no job in two shards
    # deterministic: the same again, and each job where its key alone says
    again = [[job.key for job in sweep_jobs(cfg, None, Shard(i, n))] for i in range(n)]
    assert again == shards
    for i, shard in enumerate(shards):
        assert all(shard_of(key, n) == i for key in shard)


@pytest.mark.parametrize("n", range(1, 8))
def test_the_split_is_balanced(n: int) -> None:
    keys = [f"{i:024x}" for i in range(14_000)]
    counts = Counter(shard_of(k, n) for k in keys)
    assert set(counts) == set(range(n))
    mean = len(keys) / n
    assert max(abs(c - mean) for c in counts.values()) < 0.08 * mean


def test_whole_groups_balanced_by_their_jobs() -> None:
    sizes = {f"g{i}": 1 + i % 5 for i in range(41)}
    for n in range(1, 8):
        homes = split_groups(sizes, n)
        assert set(homes) == set(sizes) and set(homes.values()) <= set(range(n))
        loads = Counter[int]()
        for group, home in homes.items():
            loads[home] += sizes[group]
        # largest first, each to the lightest shard: within one group of each other
        assert max(loads.values()) - min(loads[i] for i in range(n)) <= max(sizes.values())
        # the same split whatever order the groups come in
        assert split_groups(dict(reversed(list(sizes.items()))), n) == homes


def agent_testing_config(tmp_path: Path, base_url: str, prefix: str = "shard") -> Path:
    """2 agents x 3 scenarios x 2 languages x 2 repeats: 12 invocation groups of 2 jobs,
    on 6 tests (a test serves both agents)."""
    config = {
        "target": {
            "base_url": base_url,
            "backend": "agent-testing",
            "timeouts": {"first_byte": 20, "idle": 20, "total": 60},
            "agent_testing": {
                "name_prefix": prefix,
                "poll_interval": 0.01,
                "poll_interval_max": 0.05,
            },
        },
        "run": {
            "name": "tested",
            "concurrency": 6,
            "repeats": 2,
            "new_turns_limit": 6,
            "retry": {"backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.01},
        },
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "criteria": [
            {
                "id": "order_status_given",
                "name": "Order status given",
                "conversation_goal_prompt": "The agent told the user the status of the order.",
            }
        ],
        "scenarios": [
            {
                "id": f"s{i}",
                "first_message": f"Where is my order A-{1000 + i}?",
                "prompt": f"You are customer {i}; order A-{1000 + i} is late.",
            }
            for i in range(3)
        ],
        "matrix": {"language": ["en", "es"]},
    }
    path = tmp_path / "tested.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("n", range(1, 6))
def test_agent_testing_splits_by_test_keeping_each_invocation_group_whole(
    tmp_path: Path, n: int
) -> None:
    cfg = load_config(agent_testing_config(tmp_path, "http://127.0.0.1:9"))
    options, repeats = cfg.target.agent_testing, cfg.run.repeats

    def group(job: Job) -> tuple[str, str, int, int, str]:  # the backend's invocation group
        start, count = repeat_window(job.repeat, repeats)
        return (job.agent_id, spec_of(job, options).hash, start, count, variant_hash(job))

    every = [job.key for job in iter_jobs(cfg)]
    shards = [list(sweep_jobs(cfg, None, Shard(i, n))) for i in range(n)]
    assert sorted(j.key for shard in shards for j in shard) == sorted(every)  # each once
    home: dict[Any, int] = {}
    for i, shard in enumerate(shards):
        for job in shard:
            # every job of a group, and every group of a test, in one shard
            assert home.setdefault(group(job), i) == i
            assert home.setdefault(spec_of(job, options).hash, i) == i
    assert len({g for g in home if isinstance(g, tuple)}) == 12
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 4  # a test's 4 jobs (2 agents x 2 repeats) at most
    again = [[j.key for j in sweep_jobs(cfg, None, Shard(i, n))] for i in range(n)]
    assert again == [[j.key for j in shard] for shard in shards]


def test_a_job_has_the_same_shard_on_every_machine() -> None:
    # a hash of the key, not Python's per-process salted hash(): pinned values
    assert shard_of("abc", 7) == 2
    assert shard_of("0123456789abcdef01234567", 5) == 1
    code = "from runner.shard import shard_of; print(shard_of('abc', 7))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "2"


def test_shard_specs_and_the_engines_environment() -> None:
    assert parse_shard("2/8") == Shard(2, 8)
    for bad in ("8/8", "-1/3", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    # Kubernetes Indexed Job: the index from the environment, the count given
    assert shard_from_env({"JOB_COMPLETION_INDEX": "3"}, 4) == Shard(3, 4)
    with pytest.raises(ShardError, match="--shards"):
        shard_from_env({"JOB_COMPLETION_INDEX": "3"})
    # Slurm array: index and count, counted from the array's first index
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "2"}
    assert shard_from_env(slurm) == Shard(3, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}) == Shard(
        0, 2
    )
    with pytest.raises(ShardError, match="disagrees"):
        shard_from_env(slurm, 5)
    with pytest.raises(ShardError, match="no shard index"):
        shard_from_env({})
    assert resolve_shard(None, None, {}) is None
    assert resolve_shard("auto", 4, {"JOB_COMPLETION_INDEX": "0"}) == Shard(0, 4)
    assert resolve_shard("1/4", 4, {}) == Shard(1, 4)
    with pytest.raises(ShardError):
        resolve_shard("1/4", 3, {})


def test_shard_locks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ShardLock(run_dir, 0, 2):
        with ShardLock(run_dir, 1, 2):  # shards run side by side
            pass
        with pytest.raises(StoreError, match="already running"):
            ShardLock(run_dir, 0, 2).acquire()
        with pytest.raises(StoreError, match="in use"):  # no single-process run, no merge
            RunLock(run_dir).acquire()
        with pytest.raises(StoreError, match="another count"):  # overlapping jobs
            ShardLock(run_dir, 0, 3).acquire()
    with RunLock(run_dir), pytest.raises(StoreError, match="single-process run or a merge"):
        ShardLock(run_dir, 0, 2).acquire()
    with ShardLock(run_dir, 2, 3):  # nothing running any more: any count
        pass


# --------------------------------------------------------------------------- end to end


def write_config(tmp_path: Path, base_url: str, scenarios: int = 12, **run: Any) -> Path:
    """``scenarios`` x 2 agents x 1 repeat. One repeat: the local API's conversation for a
    request depends on how often it has seen that body, so with one repeat each job's result
    is the same whichever process sends it and in what order."""
    config = {
        "target": {"base_url": base_url, "timeouts": {"first_byte": 10, "idle": 10, "total": 60}},
        "run": {"name": "sharded", "concurrency": 4, "repeats": 1, "new_turns_limit": 6, **run},
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "criteria": [
            {
                "id": "polite",
                "name": "Polite",
                "conversation_goal_prompt": "The agent was polite.",
            }
        ],
        "scenarios": [
            {
                "id": f"s{i}",
                "first_message": f"Where is my order A-{1000 + i}?",
                "prompt": f"You are customer {i}; order A-{1000 + i} is late.",
            }
            for i in range(scenarios)
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner", *args]


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        runner_cmd(*args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        runner_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


CONTENT = {
    "jobs": ["job_key", "agent_id", "scenario_id", "repeat", "status", "message_count"],
    "messages": ["job_key", "index", "role", "message"],
    "criteria": ["job_key", "criterion_id", "result", "rationale", "score"],
    "data_collection": ["job_key", "data_collection_id", "value"],
}


def content(run_dir: Path) -> dict[str, pl.DataFrame]:
    """What a run found, without its timings and session ids, in a fixed order."""
    run = load_run(run_dir)
    out = {}
    for table, columns in CONTENT.items():
        frame = getattr(run, table)
        assert isinstance(frame, pl.DataFrame)
        out[table] = frame.select(columns).sort(columns[:2])
    return out


def same_content(a: Path, b: Path) -> bool:
    left, right = content(a), content(b)
    for table in CONTENT:
        assert left[table].height > 0 or table == "data_collection", table
        assert left[table].equals(right[table]), table
    return True


def test_shard_processes_then_merge_give_the_tables_of_one_process(tmp_path: Path) -> None:
    with (
        local_api_process(["--time-scale", "0.01", "--seed", "5"]) as one_api,
        local_api_process(["--time-scale", "0.01", "--seed", "5"]) as shards_api,
    ):
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        single = write_config(tmp_path / "a", one_api.base_url)
        done = run_cli("run", str(single), "--results", str(tmp_path / "one"), "--no-progress")
        assert done.returncode == 0, done.stderr

        config = write_config(tmp_path / "b", shards_api.base_url)
        results = tmp_path / "many"
        # three shards at once, the index given three ways: I/N, Kubernetes, Slurm
        procs = [
            spawn(
                ["run", str(config), "--results", str(results), "--no-progress", "--shard", "0/3"]
            ),
            spawn(
                [
                    *("run", str(config), "--results", str(results), "--no-progress"),
                    *("--shard", "auto", "--shards", "3"),
                ],
                env={"JOB_COMPLETION_INDEX": "1"},
            ),
            spawn(
                ["run", str(config), "--results", str(results), "--no-progress", "--shard", "auto"],
                env={"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"},
            ),
        ]
        cfg = load_config(config)
        for index, proc in enumerate(procs):
            code, out, err = finish(proc)
            assert code == 0, err
            assert "merge" in out
            # each shard estimates its own share of the sweep, not the whole sweep
            share = sum(1 for _ in sweep_jobs(cfg, None, Shard(index, 3)))
            assert f"expected cost of {share} job(s) to run" in err, err
        assert shards_api.stats()["simulate_requests"] == 24  # each job sent once, in total

    run_dir = results / "sharded"
    assert sorted(p.name for p in (run_dir / "shards").iterdir()) == [
        "0-of-3.json",
        "1-of-3.json",
        "2-of-3.json",
    ]
    assert not (run_dir / "jobs.parquet").exists()  # shards never build the final tables
    # read before the merge: load_run, report and check read the part files
    unmerged = read_manifest(run_dir)
    assert unmerged is not None and not unmerged.finalized and len(unmerged.sessions) == 3
    assert same_content(run_dir, tmp_path / "one" / "sharded")
    with viewer_process(results) as viewer, httpx.Client(base_url=viewer.base_url) as client:
        runs = client.get("/")
        assert runs.status_code == 200 and "/runs/sharded" in runs.text
        assert "incomplete" in runs.text  # not merged yet: its parts are read
        page = client.get("/runs/sharded")
        assert page.status_code == 200 and ">24<" in page.text.replace(" ", "")
    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    check = run_cli("check", str(run_dir), "--max-error-rate", "0.5")
    # the verdict of the one-process run of the same jobs (the same tables), from the parts
    alone = run_cli("check", str(tmp_path / "one" / "sharded"), "--max-error-rate", "0.5")
    assert check.returncode == alone.returncode == EXIT_PASSED, check.stdout + check.stderr
    assert "(0/24 jobs ended in error)" in check.stdout  # every shard's jobs, from the parts
    assert "check" in check.stdout

    merged = run_cli("merge", str(run_dir))
    assert merged.returncode == 0, merged.stderr
    assert "all 24 job(s) have a result" in merged.stdout
    manifest = read_manifest(run_dir)
    assert manifest is not None and manifest.finalized
    assert len(manifest.sessions) == 3 and manifest.counts["jobs"] == 24
    assert (run_dir / "jobs.parquet").exists()
    assert same_content(run_dir, tmp_path / "one" / "sharded")
    first = {t: pl.read_parquet(run_dir / f"{t}.parquet") for t in CONTENT}
    again = run_cli("merge", str(run_dir))  # idempotent
    assert again.returncode == 0, again.stderr
    for table, frame in first.items():
        assert pl.read_parquet(run_dir / f"{table}.parquet").equals(frame)
    with viewer_process(results) as viewer, httpx.Client(base_url=viewer.base_url) as client:
        assert "finished" in client.get("/").text
    compare = run_cli("compare", str(tmp_path / "one" / "sharded"), str(run_dir))
    assert compare.returncode == 0, compare.stderr
    assert "regression" not in compare.stdout.split("verdicts:")[-1]


def test_merge_names_the_jobs_no_shard_has_finished(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.005", "--seed", "3"]) as api:
        config = write_config(tmp_path, api.base_url)
        results = tmp_path / "r"
        for index in (0, 1):
            done = run_cli(
                "run", str(config), "--results", str(results), "--no-progress",
                "--shard", f"{index}/3",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        run_dir = results / "sharded"
        missing = run_cli("merge", str(run_dir))
        assert missing.returncode == 1
        cfg = load_config(config)
        expected = {job.key for job in sweep_jobs(cfg, None, Shard(2, 3))}
        named = {
            line.split()[1] for line in missing.stdout.splitlines() if line.startswith("missing ")
        }
        assert named == expected and expected
        assert f"{len(expected)} of 24 job(s) have no result" in missing.stderr
        assert f"shard 2/3: {len(expected)}" in missing.stderr
        assert not (run_dir / "jobs.parquet").exists()  # nothing built while jobs are missing
        done = run_cli(
            "run", str(config), "--results", str(results), "--no-progress", "--shard", "2/3"
        )
        assert done.returncode == 0, done.stderr
        merged = run_cli("merge", str(run_dir))
        assert merged.returncode == 0, merged.stderr
        assert api.stats()["simulate_requests"] == 24


def test_merge_names_an_agent_testing_shards_missing_jobs_by_the_same_split(
    tmp_path: Path,
) -> None:
    with local_api_process(["--time-scale", "0.002", "--seed", "3"]) as api:
        config = agent_testing_config(tmp_path, api.base_url)
        results = tmp_path / "r"
        done = run_cli(
            "run", str(config), "--results", str(results), "--no-progress", "--shard", "0/2"
        )
        assert done.returncode == 0, done.stderr
        missing = run_cli("merge", str(results / "tested"))
    assert missing.returncode == 1
    expected = {job.key for job in sweep_jobs(load_config(config), None, Shard(1, 2))}
    named = {line.split()[1] for line in missing.stdout.splitlines() if line.startswith("missing ")}
    assert named == expected and 0 < len(expected) < 24
    assert f"shard 1/2: {len(expected)}" in missing.stderr and "shard 0/2" not in missing.stderr


def test_a_killed_shard_resumes_its_own_jobs_and_pays_for_nothing_twice(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.05", "--seed", "7"]) as api:
        config = write_config(tmp_path, api.base_url, scenarios=30)
        results = tmp_path / "r"
        run_dir = results / "sharded"
        args = ["run", str(config), "--results", str(results), "--no-progress"]
        victim = spawn([*args, "--shard", "0/2"])
        other = spawn([*args, "--shard", "1/2"])
        journal = run_dir / "journal"
        deadline = time.monotonic() + 60
        mine = {job.key for job in sweep_jobs(load_config(config), None, Shard(0, 2))}

        def finished_lines() -> int:
            own = read_manifest(run_dir)
            if own is None:
                return 0
            return sum(
                max(0, len(p.read_bytes().splitlines()) - 1)
                for p in journal.glob("*.jsonl")
                if not p.name.startswith(TMP_PREFIX)
            )

        while time.monotonic() < deadline and finished_lines() < 6:
            time.sleep(0.02)
        victim.kill()
        victim.communicate()
        assert victim.returncode == -9
        done_by_victim = done_job_keys(run_dir) & mine  # in parts so far
        code, _, err = finish(other)
        assert code == 0, err
        sent_before = api.stats()["simulate_requests"]

        restarted = spawn([*args, "--shard", "0/2"])
        code, _, err = finish(restarted)
        assert code == 0, err
        assert "recovered" in err  # its journal, folded into parts at its next start
        own = read_manifest(run_dir)
        assert own is not None
        resumed = [s for s in own.sessions if s.recovered]
        assert len(resumed) == 1
        recovered = resumed[0].recovered
        sent_after = api.stats()["simulate_requests"] - sent_before
        # what the restart sent: the shard's jobs, less those finished before the kill
        assert sent_after == len(mine) - len(done_by_victim) - recovered
        assert recovered + len(done_by_victim) > 0

        merged = run_cli("merge", str(run_dir))
        assert merged.returncode == 0, merged.stderr
        run = load_run(run_dir)
        assert isinstance(run.jobs, pl.DataFrame)
        assert run.jobs.height == 60 and run.jobs["job_key"].n_unique() == 60
        assert set(run.jobs["status"]) == {"ok"}
        assert run.messages.group_by("job_key", "index").len()["len"].max() == 1


AT_CONTENT = {
    "jobs": ["job_key", "agent_id", "scenario_id", "repeat", "status", "message_count"],
    "messages": ["job_key", "index", "role", "message"],
    "criteria": ["job_key", "criterion_id", "result"],
}


def test_agent_testing_shards_start_each_test_run_once_and_merge_as_one_process(
    tmp_path: Path,
) -> None:
    with (
        local_api_process(["--time-scale", "0.002", "--seed", "6"]) as one_api,
        local_api_process(["--time-scale", "0.002", "--seed", "6"]) as shards_api,
    ):
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        single = agent_testing_config(tmp_path / "a", one_api.base_url)
        done = run_cli("run", str(single), "--results", str(tmp_path / "one"), "--no-progress")
        assert done.returncode == 0, done.stderr
        config = agent_testing_config(tmp_path / "b", shards_api.base_url)
        results = tmp_path / "many"
        procs = [
            spawn(
                [
                    *("run", str(config), "--results", str(results), "--no-progress"),
                    *("--shard", f"{i}/3"),
                ]
            )
            for i in range(3)
        ]
        for proc in procs:
            code, _, err = finish(proc)
            assert code == 0, err
        merged = run_cli("merge", str(results / "tested"))
        assert merged.returncode == 0, merged.stderr
        assert "all 24 job(s) have a result" in merged.stdout
        one, many = one_api.stats()["agent_testing"], shards_api.stats()["agent_testing"]
    # the server saw each test run started once, and each test created once: no shard
    # started (or paid for) another's invocation
    assert many["runs_started"] == one["runs_started"] == 24
    assert many["tests_created"] == one["tests_created"] == 6
    assert many["runs_cancelled"] == 0
    # each shard recorded its invocations in a file of its own (appends from several machines
    # to one file on shared storage are not atomic everywhere), and together they name them all
    records = sorted(p.name for p in (results / "tested").glob("invocations*.jsonl"))
    assert records == [f"invocations-{i}-of-3.jsonl" for i in range(3)]
    ids = [
        {
            json.loads(line)["invocation_id"]
            for line in (results / "tested" / name).read_text().splitlines()
        }
        for name in records
    ]
    assert all(ids) and sum(map(len, ids)) == len(set().union(*ids))  # none in two shards
    left = load_run(tmp_path / "one" / "tested")
    right = load_run(results / "tested")
    for table, columns in AT_CONTENT.items():
        a, b = getattr(left, table), getattr(right, table)
        assert isinstance(a, pl.DataFrame) and isinstance(b, pl.DataFrame)
        assert a.height > 0, table
        assert a.select(columns).sort(columns[:3]).equals(b.select(columns).sort(columns[:3]))


def test_the_run_flags_make_one_shard_or_one_clear_error() -> None:
    assert shard_for_run(None, None, {}) is None
    assert shard_for_run("1/3", None, {}) == Shard(1, 3)
    assert shard_for_run("auto", 4, {"JOB_COMPLETION_INDEX": "2"}) == Shard(2, 4)
    assert shard_for_run(None, 4, {}, ray=True) is None  # Ray starts every shard itself
    with pytest.raises(ShardError, match="--ray starts every shard itself"):
        shard_for_run("0/2", None, {}, ray=True)
    with pytest.raises(ShardError, match="--shards N needs --shard"):
        shard_for_run(None, 3, {})


@pytest.mark.parametrize("name", ["renamed", None])
def test_merge_does_not_count_the_name_a_run_ran_under_as_a_config_change(
    tmp_path: Path, name: str | None
) -> None:
    """Shards run with ``--name renamed`` recorded the config with that name; ``merge`` reads
    the config file (its own name ``sharded``) and must not warn that it changed. An edit of
    the file still warns."""
    from datetime import UTC, datetime

    from runner.config import config_hash
    from runner.manifest import Manifest, Target
    from runner.merge import sweep_config
    from runner.store import write_manifest

    config = write_config(tmp_path, "http://127.0.0.1:9")
    ran = load_config(config, {"run.name": name} if name else None)
    run_dir = tmp_path / (name or "sharded")
    run_dir.mkdir()
    manifest = Manifest(
        run_name=run_dir.name,
        created_at=datetime.now(UTC),
        config_path=str(config.resolve()),
        config_hash=config_hash(ran),
        target=Target(base_url=ran.target.base_url, backend=ran.target.backend),
    )
    write_manifest(run_dir, manifest)
    _, warnings = sweep_config(run_dir, None)
    assert warnings == []
    config.write_text(config.read_text().replace("concurrency: 4", "concurrency: 5"))
    _, warnings = sweep_config(run_dir, None)
    assert len(warnings) == 1 and "differs from the config" in warnings[0]
