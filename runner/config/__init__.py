"""Sweep configuration: what a config file may say, and loading it with one-line errors.

``models`` (the sections and fields), ``errors`` (one-line messages), ``scenarios`` (scenario
files), ``body`` (a scenario as the request body), ``load`` (read, override, check). Expansion
into jobs is ``runner.jobs``.
"""

from runner.config.body import build_body, canonical_json, encode_body
from runner.config.errors import ConfigError
from runner.config.load import config_hash, load_config, parse_config, resolved_config
from runner.config.models import (
    MATRIX_AXES,
    AgentRef,
    AgentTestingConfig,
    Config,
    CriterionSpec,
    LocalServerConfig,
    RetryPolicy,
    RunConfig,
    ScenarioFileRef,
    ScenarioSpec,
    TargetConfig,
    Timeouts,
    ToolMock,
)
from runner.config.scenarios import iter_scenarios, scenario_count

__all__ = [
    "MATRIX_AXES",
    "AgentRef",
    "AgentTestingConfig",
    "Config",
    "ConfigError",
    "CriterionSpec",
    "LocalServerConfig",
    "RetryPolicy",
    "RunConfig",
    "ScenarioFileRef",
    "ScenarioSpec",
    "TargetConfig",
    "Timeouts",
    "ToolMock",
    "build_body",
    "canonical_json",
    "config_hash",
    "encode_body",
    "iter_scenarios",
    "load_config",
    "parse_config",
    "resolved_config",
    "scenario_count",
]
