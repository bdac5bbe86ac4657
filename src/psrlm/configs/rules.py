"""The rules that read more than one section, in one place, and `validate`, which applies every rule.

Each section checks its own keys in its `rules()` method, beside its fields. What is left here reads another
section too (search.judge=oracle needs data.source=arith), or depends on where a section sits in the recipe (the
run's `engine`, not `initdata.teacher_engine`; `dpo`, not `sft`). The loader (configs/loader.py) calls `validate`
once every recipe and `--set` is applied, so `show-config` and the first second of a run catch a bad value, not
the stage that reads it an hour in.

At the end: the rules of one command, which other commands do not share (checked when that command starts).
Checks that need the filesystem or a run folder stay with the code that reads them.
"""

from __future__ import annotations

from typing import Any

from psrlm.configs.checks import ConfigError, Rule
from psrlm.configs.model import LOCAL_HOSTS
from psrlm.configs.recipe import Config

# The sections validate checks, in the order their errors are reported.
SECTIONS = ("paths", "arith", "data", "model", "prompts", "engine", "search", "srlm", "pretrain", "sft", "dpo", "rft",
            "iterate", "grading", "initdata", "track", "launch", "plan", "initdata.teacher_engine",
            "initdata.prm_train")  # fmt: skip


def context_rules(cfg: Config) -> dict[str, list[Rule]]:
    """section -> its rules that read another section or depend on the section's place; each section's errors
    are reported after those of its own `rules()`."""
    d, e, s, it = cfg.data, cfg.engine, cfg.search, cfg.iterate
    remote = [h for h in e.server_hosts if h not in LOCAL_HOSTS]
    return {
        "data": [
            ("source", d.source != "files" or bool(cfg.model.path), "needs model.path (the M0 of a real run)"),
            ("srlm_eft_file", d.source != "files" or "srlm" not in it.methods or bool(d.srlm_eft_file),
             "must name the SRLM scorer's training data (ScoreExample JSONL) when iterate.methods has srlm"),
        ],
        # the run's engine only: initdata.teacher_engine is kind=openai with no URL by default, until a
        # `psrlm data` stage uses it
        "engine": [
            ("server_hosts", not remote or "{host}" in e.server_cmd,
             f"{remote[0] if remote else ''} is another host: give an engine.server_cmd that starts the server "
             "there, with slot {host} (e.g. srun -w {host} ...)"),
            ("base_urls", e.kind != "openai" or bool(e.base_urls), "must list the server URL(s) for kind=openai"),
        ],
        "search": [
            ("judge", s.judge == "self" or d.source == "arith",
             "oracle needs the arith domain's step oracle (data.source=arith)"),
            ("verdict", not (e.kind == "transformers" and s.verdict in ("logits", "soft")),
             "reads the judge's log-probabilities, which `transformers serve` does not return (it ignores echo and "
             "logprobs): use engine.kind=hf, vllm or sglang, or search.verdict=generate"),
        ],
        "srlm": [
            ("judge", cfg.srlm.judge == "self" or d.source == "arith",
             "oracle needs the arith domain (data.source=arith)"),
        ],
        "dpo": [
            ("sampler", cfg.dpo.sampler == "random",
             "group_by_length is for pretrain / sft / rft (a DPO row has two lengths)"),
        ],
        # the stages trained once per run: a rate per iteration means nothing there
        **{section: [("lr_scale_by_iteration", not tc.lr_scale_by_iteration, "is for the iterated stages (dpo, rft)")]
           for section, tc in (("pretrain", cfg.pretrain), ("sft", cfg.sft),
                               ("initdata.prm_train", cfg.initdata.prm_train))},
        "iterate": [
            ("eval_benchmarks", d.source != "files" or bool(it.eval_benchmarks),
             "must name the test sets of a files run (e.g. [paper]): it has no arith splits"),
            ("schedule", it.schedule != "frontier" or (d.source == "arith" and bool(cfg.arith.levels)),
             "frontier needs the arith domain and a difficulty ladder (arith.levels)"),
            # the oracle arm: the step oracle judges, and its chain starts from the method's M1
            ("oracle_iterations", not it.oracle_iterations or d.source == "arith",
             "needs the arith domain's step oracle (data.source=arith); 0 turns the oracle arm off"),
            ("oracle_iterations", not it.oracle_iterations or "psrlm" in it.methods,
             "needs psrlm in iterate.methods (the oracle arm starts from psrlm-M1 and searches its questions); 0 "
             "turns the oracle arm off"),
        ],
    }  # fmt: skip


def problems(cfg: Config, sources: dict[str, str] | None = None) -> list[str]:
    """Every rule that does not hold, as `section.key=value (where it was set): what it must be`, each once."""
    extra = context_rules(cfg)
    errors = []
    for section in SECTIONS:
        obj: Any = cfg
        for part in section.split("."):
            obj = getattr(obj, part)
        for key, holds, what in [*obj.rules(), *extra.get(section, [])]:
            if not holds:
                dotted = f"{section}.{key}"
                where = (sources or {}).get(dotted, "default")
                errors.append(f"{dotted}={getattr(obj, key)!r} ({where}): {what}")
    return list(dict.fromkeys(errors))


def validate(cfg: Config, sources: dict[str, str] | None = None) -> None:
    """Every range and choice; all violations in one ConfigError, each naming its key, value and where it was set
    (`sources`: dotted key -> recipe file or `--set ...`). Changes nothing in `cfg`."""
    errors = problems(cfg, sources)
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))


# ------------------------------------------------------------------------------------ rules of one command


def check_for_iterate(cfg: Config) -> None:
    """`psrlm iterate` (and `bench`, which runs its checks) generates with every checkpoint in turn."""
    if cfg.engine.kind == "openai" and cfg.engine.model_name:
        # every checkpoint of the loop generates in turn; a fixed served name would search and evaluate with one
        # model throughout, without a word
        raise ConfigError(f"engine.model_name={cfg.engine.model_name!r} with engine.kind=openai: iterate generates "
                          "with each new checkpoint, and a running server serves one model. Use engine.kind vllm, "
                          "sglang or transformers (psrlm serves each checkpoint), or leave model_name empty for a "
                          "server that loads the model named by its path (transformers serve)")  # fmt: skip


def check_for_sweep(cfg: Config) -> None:
    if cfg.data.source != "arith":
        raise ConfigError("psrlm sweep needs the arith domain's step oracle (data.source=arith)")


def check_for_frontier(cfg: Config) -> None:
    if cfg.data.source != "arith" or not cfg.arith.levels:
        raise ConfigError("psrlm frontier needs the arith domain and a difficulty ladder (arith.levels)")
