"""``compare`` and ``check --compare``: the paired, anytime-valid comparison on runs made
against the local API (issue 26)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS

import runner
from runner.cli import main
from runner.localapi.server import LocalAPI, local_api_process
from runner.report.paired import from_args

EXIT_USAGE = 2
AXIS = "matrix.dynamic_variables.customer_tier"


def write_config(path: Path, agents: list[dict[str, str]], seed: int) -> Path:
    config: dict[str, Any] = {
        "target": {"base_url": "local", "timeouts": {"connect": 5, "first_byte": 10, "idle": 5}},
        "run": {"concurrency": 8, "new_turns_limit": 8, "repeats": 4, "seed": seed},
        "agents": agents,
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
        "matrix": {"dynamic_variables.customer_tier": ["gold", "basic"]},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.001", "--seed", "3"]) as api:
        yield api


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, server: LocalAPI) -> dict[str, Path]:
    """``both``: support and support-lite; ``self1`` / ``self2``: support alone, two seeds."""
    root = tmp_path_factory.mktemp("paired")
    support = {"id": "agent_support", "label": "support"}
    lite = {"id": "agent_support_lite", "label": "lite"}
    configs = {
        "both": write_config(root / "both.yaml", [support, lite], 1),
        "self1": write_config(root / "self1.yaml", [support], 2),
        "self2": write_config(root / "self2.yaml", [support], 3),
    }
    return {
        name: runner.run(
            config, name=name, results_root=root, progress=False, base_url=server.base_url
        ).run_dir
        for name, config in configs.items()
    }


def namespace(**kwargs: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "a": [],
        "b": [],
        "margin": None,
        "alpha": None,
        "max_pairs": None,
        "of": [],
        "error_as": "fail",
    }
    return argparse.Namespace(**{**base, **kwargs})


def test_pairs_share_scenario_cell_and_repeat(runs: dict[str, Path]) -> None:
    run = runner.load_run(runs["both"])
    shown = from_args(namespace(a=["agent=support"], b=["agent=lite"]), run, None)
    assert not isinstance(shown, str)
    pairs = shown.result.pairs
    jobs = run.jobs
    assert isinstance(jobs, pl.DataFrame)
    assert pairs.height == jobs.height // 2 == 3 * 2 * 4
    by_key = {row["job_key"]: row for row in jobs.iter_rows(named=True)}
    for row in pairs.iter_rows(named=True):
        b, c = by_key[row["baseline_job_key"]], by_key[row["candidate_job_key"]]
        assert (b["agent_label"], c["agent_label"]) == ("support", "lite")
        for column in ("scenario_id", AXIS, "repeat"):
            assert b[column] == c[column] == row[column]
    # two arms of a matrix axis: paired across the axis, on scenario, agent's cases, repeat
    arms = from_args(
        namespace(a=["agent=support", f"{AXIS}=gold"], b=["agent=support", f"{AXIS}=basic"]),
        run,
        None,
    )
    assert not isinstance(arms, str)
    assert AXIS not in arms.result.key and arms.result.pairs.height == 3 * 4


def test_compare_prints_the_paired_section_beside_todays_figures(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    both = str(runs["both"])
    assert main(["compare", both, "--a", "agent=support", "--b", "agent=lite"]) == 0
    out = capsys.readouterr().out
    assert "paired comparison (anytime-valid)" in out
    assert "confidence sequence" in out and "spend per variant" in out
    assert "per scenario" in out and " of 24 pairs" in out
    # two runs: today's table first, then the paired section
    args = ["compare", str(runs["self1"]), str(runs["self2"])]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.index("verdicts:") < out.index("paired comparison (anytime-valid)")
    # a run of several agents, no selector: today's output, and a note for the paired part
    assert main(["compare", both, both]) == 0
    assert "paired comparison: not computed" in capsys.readouterr().out


def test_a_variant_against_itself_is_never_worse(runs: dict[str, Path]) -> None:
    a, b = runner.load_run(runs["self1"]), runner.load_run(runs["self2"])
    for margin in (0.0, 0.05, 0.2):
        shown = from_args(namespace(margin=margin), a, b)
        assert not isinstance(shown, str)
        assert shown.result.decision.verdict != "worse"
        assert shown.result.pairs.height == 24
    code = main(["check", str(runs["self1"]), "--compare", str(runs["self2"])])
    assert code == 0


def test_check_compare_exit_codes_follow_the_decision(runs: dict[str, Path]) -> None:
    run = runner.load_run(runs["both"])
    sel = ["--a", "agent=support", "--b", "agent=lite"]
    for margin in ("0", "0.5"):
        shown = from_args(
            namespace(a=["agent=support"], b=["agent=lite"], margin=float(margin)), run, None
        )
        assert not isinstance(shown, str)
        verdict = shown.result.decision.verdict
        expected = {"worse": 1, "not worse": 0, "undecided": 0}[verdict]
        args = ["check", str(runs["both"]), "--compare", *sel, "--margin", margin]
        assert main(args) == expected
        strict = {"worse": 1, "not worse": 0, "undecided": 3}[verdict]
        assert main([*args, "--fail-on-undecided"]) == strict


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--a", "matrix.nope=x", "--b", "agent=lite"], "--a: no matrix axis 'matrix.nope'"),
        (["--a", "agent=support", "--b", "agent=nobody"], "--b: no jobs with agent=nobody"),
        (["--a", "support", "--b", "agent=lite"], "--a: expected agent=LABEL"),
        (["--a", "agent=support", "--b", "agent=lite", "--margin", "-0.1"], "--margin: must"),
        (["--a", "agent=support", "--b", "agent=lite", "--alpha", "1"], "--alpha: must"),
        (["--a", "agent=support", "--b", "agent=lite", "--of", "nope"], "--of: no criterion"),
        (["--a", "agent=support"], "--b: two arms of one run need --a and --b"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    for command in (["compare", str(runs["both"])], ["check", str(runs["both"]), "--compare"]):
        assert main([*command, *args]) == EXIT_USAGE
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert "paired comparison" not in captured.out


# ---------------------------------------------------------------------- the compare: block


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baseline": "nobody"}, "compare.baseline: no agent 'nobody'"),
        ({"margin": -0.1}, "compare.margin: must be at least 0"),
        ({"candidate": {"matrix": {"llm": "x"}}}, "compare.candidate.matrix.llm: no such"),
        ({"candidate": "support"}, "compare.candidate: the same variant as the baseline"),
        ({"of": ["nope"]}, "compare.of[0]: no criterion 'nope'"),
    ],
)
def test_a_bad_compare_block_is_refused_in_one_line_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    path = write_config(
        tmp_path / "c.yaml",
        [{"id": "agent_support", "label": "support"}, {"id": "agent_support_lite"}],
        0,
    )
    config = yaml.safe_load(path.read_text())
    config["compare"] = {"baseline": "support", "candidate": "agent_support_lite", **change}
    path.write_text(yaml.safe_dump(config))
    # an unreachable target: any request would fail differently (and later)
    args = ["run", str(path), "--results", str(tmp_path), "--no-progress"]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "c").exists()
