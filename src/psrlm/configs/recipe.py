"""Config: what a whole recipe describes, one field per section. The class of each section is in the module named
after its concern (data, model, search, train, iterate, initdata, infra)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psrlm.configs.data import ArithConfig, DataConfig, PathsConfig
from psrlm.configs.infra import LaunchConfig, PlanConfig, TrackConfig
from psrlm.configs.initdata import InitDataConfig
from psrlm.configs.iterate import GradingConfig, IterateConfig
from psrlm.configs.model import EngineConfig, ModelConfig, PromptConfig
from psrlm.configs.search import SearchConfig, SRLMConfig
from psrlm.configs.train import TrainConfig


@dataclass
class Config:
    """A whole recipe: one field per section (pretrain / sft / dpo / rft share a class, each with its defaults)."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    arith: ArithConfig = field(default_factory=ArithConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    srlm: SRLMConfig = field(default_factory=SRLMConfig)
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-3, batch_size=32))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-6, batch_size=32))
    dpo: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=5e-7, batch_size=32))
    rft: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=1e-6, batch_size=32))
    iterate: IterateConfig = field(default_factory=IterateConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    initdata: InitDataConfig = field(default_factory=InitDataConfig)
