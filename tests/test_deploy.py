"""The deploy recipes (deploy/): a Kubernetes Indexed Job and a Slurm array, each with its merge
step. Parsed and checked (they run the shard protocol with the index the engine sets), then run
here as the engine would: each shard's command with that engine's environment, against a local
API on 127.0.0.1, then the merge, which must find every job."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli import build_parser
from runner.localapi.server import LocalAPI, local_api_process
from runner.shard import Shard, resolve_shard
from runner.store import load_run, read_manifest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_SHARDS = DEPLOY / "kubernetes" / "shards-job.yaml"
K8S_MERGE = DEPLOY / "kubernetes" / "merge-job.yaml"
SLURM_SHARDS = DEPLOY / "slurm" / "shards.sbatch"
SLURM_MERGE = DEPLOY / "slurm" / "merge.sbatch"


def write_config(path: Path, base_url: str) -> Path:
    """8 scenarios x 2 agents, named ``sweep`` as the recipes' config is."""
    config = {
        "target": {"base_url": base_url},
        "run": {"name": "sweep", "concurrency": 4, "new_turns_limit": 4},
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Order A-{i}?", "prompt": f"Customer {i}."}
            for i in range(8)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def api() -> Any:
    with local_api_process(["--time-scale", "0.002", "--seed", "2"]) as server:
        yield server


def container(manifest: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    (job,) = list(yaml.safe_load_all(manifest.read_text()))
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    (box,) = job["spec"]["template"]["spec"]["containers"]
    return job, box


def mounts(job: dict[str, Any], box: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in box["volumeMounts"]}


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_kubernetes_job_runs_the_shard_protocol(tmp_path: Path, api: LocalAPI) -> None:
    job, box = container(K8S_SHARDS)
    spec = job["spec"]
    command = [str(c) for c in box["command"]]
    assert spec["completionMode"] == "Indexed"  # Kubernetes sets JOB_COMPLETION_INDEX
    count = spec["completions"]
    assert spec["parallelism"] == count and int(option(command, "--shards")) == count
    assert command[:4] == ["python", "-m", "runner", "run"]
    assert option(command, "--shard") == "auto"
    results, config = option(command, "--results"), command[4]
    volumes = mounts(job, box)
    assert "persistentVolumeClaim" in volumes[results]  # the shared results volume
    assert config.startswith(next(p for p, v in volumes.items() if "configMap" in v))
    assert box["env"][0]["name"] == "ELEVENLABS_API_KEY"  # from a secret, never in the file
    assert "secretKeyRef" in box["env"][0]["valueFrom"]
    # each index is the shard the protocol reads from the environment
    args = build_parser().parse_args(command[3:])
    shards = {
        resolve_shard(args.shard, args.shards, {"JOB_COMPLETION_INDEX": str(i)})
        for i in range(count)
    }
    assert shards == {Shard(i, count) for i in range(count)}

    merge_job, merge_box = container(K8S_MERGE)
    merge_cmd = [str(c) for c in merge_box["command"]]
    assert merge_cmd[:4] == ["python", "-m", "runner", "merge"]
    merge_volumes = mounts(merge_job, merge_box)
    claim = volumes[results]["persistentVolumeClaim"]["claimName"]
    assert merge_volumes[results]["persistentVolumeClaim"]["claimName"] == claim
    assert merge_cmd[4] == f"{results}/sweep" and option(merge_cmd, "--config") == config

    # run it as Kubernetes would: every index, then the merge
    local_config = write_config(tmp_path / "sweep.yaml", api.base_url)
    local_results = tmp_path / "results"

    def local(cmd: list[str]) -> list[str]:
        swap = {"python": sys.executable, config: str(local_config)}
        out = [swap.get(c, c) for c in cmd]
        return [
            c.replace(results, str(local_results), 1) if c.startswith(results) else c for c in out
        ]

    procs = [
        subprocess.Popen(
            local(command),
            cwd=ROOT,
            env={**os.environ, "JOB_COMPLETION_INDEX": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]  # every pipe read and closed
    for proc, err in zip(procs, errors, strict=True):
        assert proc.returncode == 0, err
    manifest = read_manifest(local_results / "sweep")
    assert manifest is not None and len(manifest.sessions) == count
    merged = subprocess.run(local(merge_cmd), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stderr
    run = load_run(local_results / "sweep")
    assert run.jobs.height == 16 and run.jobs["job_key"].n_unique() == 16
    assert api.stats()["simulate_requests"] == 16


def sbatch_options(script: Path) -> dict[str, str]:
    out = {}
    for line in script.read_text().splitlines():
        if m := re.match(r"#SBATCH\s+--([\w-]+)(?:=(\S+))?", line):
            out[m[1]] = m[2] or ""
    return out


def test_the_slurm_array_runs_the_shard_protocol(tmp_path: Path, api: LocalAPI) -> None:
    for script in (SLURM_SHARDS, SLURM_MERGE):
        subprocess.run(["bash", "-n", str(script)], check=True)  # it parses
    options = sbatch_options(SLURM_SHARDS)
    low, high = (int(x) for x in options["array"].split("-"))
    count = high - low + 1
    assert "requeue" in options  # a task lost with its node is started again
    text = SLURM_SHARDS.read_text()
    (srun,) = [line for line in text.splitlines() if line.startswith("srun ")]
    words = shlex.split(srun)
    assert words[2:5] == ["-m", "runner", "run"] and option(words, "--shard") == "auto"
    assert "--shards" not in words  # Slurm exports the count itself
    merge_line = next(
        line for line in SLURM_MERGE.read_text().splitlines() if line.startswith("srun ")
    )
    assert shlex.split(merge_line)[2:5] == ["-m", "runner", "merge"]

    # run it as Slurm would: srun runs the command, the array's variables set per task
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun_stub = bin_dir / "srun"
    srun_stub.write_text('#!/bin/sh\nexec "$@"\n')
    srun_stub.chmod(srun_stub.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CONFIG": str(write_config(tmp_path / "sweep.yaml", api.base_url)),
        "RESULTS": str(tmp_path / "results"),
        "PYTHON": sys.executable,
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(low),
    }
    procs = [
        subprocess.Popen(
            ["bash", str(SLURM_SHARDS)],
            cwd=ROOT,
            env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in range(low, high + 1)
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]  # every pipe read and closed
    for proc, err in zip(procs, errors, strict=True):
        assert proc.returncode == 0, err
    shards = sorted(p.name for p in (tmp_path / "results" / "sweep" / "shards").iterdir())
    assert shards == sorted(f"{i}-of-{count}.json" for i in range(count))
    merged = subprocess.run(
        ["bash", str(SLURM_MERGE)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert merged.returncode == 0, merged.stderr
    assert "all 16 job(s) have a result" in merged.stdout
    assert api.stats()["simulate_requests"] == 16
