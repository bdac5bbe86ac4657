"""All options, one dataclass per stage.

    psrlm <stage> --config configs/demo.yaml --set search.width=4 --set sft.epochs=2

A recipe is YAML whose top-level keys are the sections below; it sets only what differs from the defaults.
`--set section.key=value` overrides a recipe value (the value is read as YAML, so `4`, `0.5`, `true`, `[a, b]`
work). A key that nothing reads is an error naming the key and the file it came from: a typo in a recipe must
never silently run the default.

Where things are:
    data.py, model.py, search.py, train.py, iterate.py, initdata.py, infra.py
                    one dataclass per section: its keys explained in its docstring (docs/configuration.md is
                    generated from them), and its checks in its `rules()` method, beside the fields
    recipe.py       Config: the whole recipe, one field per section
    rules.py        the rules that read more than one section, `validate` (every rule, in a fixed order), and the
                    rules of one command (iterate, sweep, frontier)
    loader.py       YAML layering, `--set` overrides, type checks, normalising; save_config, config_to_dict
    costs.py        settings valid but far past anything measured: warned about at load
    checks.py       ConfigError and the shape of a rule
"""

from psrlm.configs.checks import ConfigError, Rule
from psrlm.configs.costs import JUDGE_CALLS_PER_ROUND_WARN, cost_warnings, judge_calls_per_round
from psrlm.configs.data import REPO_ROOT, ArithConfig, DataConfig, PathsConfig
from psrlm.configs.infra import REPORT_TO, LaunchConfig, PlanConfig, TrackConfig
from psrlm.configs.initdata import InitDataConfig
from psrlm.configs.iterate import GradingConfig, IterateConfig
from psrlm.configs.loader import config_to_dict, load_config, load_config_layers, parse_override, save_config
from psrlm.configs.model import LOCAL_HOSTS, EngineConfig, ModelConfig, PromptConfig
from psrlm.configs.recipe import Config
from psrlm.configs.rules import (
    check_for_frontier,
    check_for_iterate,
    check_for_sweep,
    context_rules,
    problems,
    validate,
)
from psrlm.configs.search import SearchConfig, SRLMConfig
from psrlm.configs.train import LR_SCHEDULERS, TrainConfig

__all__ = [
    "JUDGE_CALLS_PER_ROUND_WARN",
    "LOCAL_HOSTS",
    "LR_SCHEDULERS",
    "REPORT_TO",
    "REPO_ROOT",
    "ArithConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EngineConfig",
    "GradingConfig",
    "InitDataConfig",
    "IterateConfig",
    "LaunchConfig",
    "ModelConfig",
    "PathsConfig",
    "PlanConfig",
    "PromptConfig",
    "Rule",
    "SRLMConfig",
    "SearchConfig",
    "TrackConfig",
    "TrainConfig",
    "check_for_frontier",
    "check_for_iterate",
    "check_for_sweep",
    "config_to_dict",
    "context_rules",
    "cost_warnings",
    "judge_calls_per_round",
    "load_config",
    "load_config_layers",
    "parse_override",
    "problems",
    "save_config",
    "validate",
]
