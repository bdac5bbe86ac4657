"""The model and how it is prompted and run: the `model`, `prompts` and `engine` sections (engine also as
`initdata.teacher_engine`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psrlm.configs.checks import Rule, at_least
from psrlm.hardware import DTYPES, _parse_bool_setting
from psrlm.prompts import VARIANTS


@dataclass
class ModelConfig:
    """The model. `path` set: any Hugging Face checkpoint directory. Empty: build the tiny from-scratch model.

    vocab_size: BPE vocabulary of the trained tokenizer (digits are always single tokens).
    hidden_size / num_layers / num_heads / intermediate_size: the tiny Llama-class model (~3M at 256/4).
    max_position: context length, and the tokenizer's model_max_length.
    seed: weight initialisation seed.
    """

    path: str = ""
    vocab_size: int = 1000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    max_position: int = 1024
    seed: int = 0

    def rules(self) -> list[Rule]:
        return [
            *at_least(self, 1, "vocab_size hidden_size num_layers num_heads intermediate_size max_position"),
            ("hidden_size", self.hidden_size % max(1, self.num_heads) == 0,
             f"must be a multiple of model.num_heads ({self.num_heads})"),
        ]  # fmt: skip


@dataclass
class PromptConfig:
    """Prompt templates (prompts.py).

    variant: "paper" uses the paper's Figure 3/4/5 wording; "compact" is a short form for the tiny model, whose
        cost on CPU is dominated by judge-prompt length.
    verdict_first: EFT trains the judge to write `[[A]]`/`[[B]]` before its explanation instead of after it (the
        paper's order). search.verdict soft / logits read the tag right after the judge prompt, a position the
        paper's order never trains (there the explanation's first word is trained): measured on the demo's M1,
        soft accuracy on 200 held-out EFT items 0.47 with the paper's order, 0.62 with the tag first (docs/results.md).
        Generated verdicts (the paper's search) want false.
    """

    variant: str = "paper"
    verdict_first: bool = False

    def rules(self) -> list[Rule]:
        return [("variant", self.variant in VARIANTS, f"choose one of {', '.join(sorted(VARIANTS))}")]


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class EngineConfig:
    """Text generation (engines/).

    kind: "hf" = in-process transformers; "openai" = an OpenAI-compatible server already running (base_urls);
        "vllm" / "sglang" / "transformers" = servers psrlm starts on each checkpoint that needs generation and stops
        after (engines/servers.py), then talks to like "openai".
    device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...   (hf)
    dtype: "auto" = bf16 on CUDA, and on a CPU only where it has native bf16 (AVX512-BF16 / AMX), else fp32
        (emulated bf16 is ~30x slower; hardware.py); or "float32", "bfloat16", "float16".   (hf)
    batch_size: sequences per forward batch.   (hf)
    static_cache: pre-allocated KV cache: "auto" = on for CPU (measured faster or equal there), off on CUDA;
        or true / false.   (hf)
    base_urls: one or more server URLs ending in /v1; requests are spread over them.   (openai)
    model_name: the model name the server knows.   (openai)
    api_key_env: environment variable holding the API key (never logged).   (openai)
    concurrency / timeout_s / max_retries: in-flight requests, per-request timeout, retries on 429/5xx.  (openai)
    extra_body: extra JSON fields sent with every request (e.g. {"generation_config": "..."}).   (openai)
    api: "completions" (raw prompt in, text out: what the search needs) or "chat" (/v1/chat/completions: the prompt
        as one user message, the server applies the model's chat template; for a chat model as the IFT/EFT teacher
        or the Appendix B judge).   (openai)
    reasoning: the model is one of OpenAI's reasoning models (o1, o3, o4-mini, ...; the paper's teacher is o1): its
        chat requests carry `max_completion_tokens` (which counts the hidden reasoning tokens too) instead of
        `max_tokens`, and no `temperature`, `top_p`, `stop` or `seed`, which those models reject with a 400 (OpenAI
        API reference, chat/create: max_tokens "is not compatible with o1 series models"); stop strings are cut
        on the client. Needs kind=openai and api=chat.   (openai)
    server_cmd: the command of one server replica, with slots {model} {served_name} {port} {tensor_parallel}
        {max_model_len} {dtype} {python} {device}; empty = the kind's default (vLLM: `vllm serve ...` with prefix
        caching; put the path of vLLM's own virtualenv here).   (vllm, sglang, transformers)
    servers: replicas (data parallel); port: the first port tried (each replica takes the next free one);
    tensor_parallel: GPUs per replica (must divide the model's attention heads); assign_gpus: give replica i
        CUDA_VISIBLE_DEVICES i*tp..(i+1)*tp-1; max_model_len: the server's context;
    server_timeout_s: how long a server may take to become ready; server_restarts: restarts of a replica that dies
        mid-stage before the stage fails.   (vllm, sglang, transformers)
    server_hosts: the hosts replicas run on, replica i on host i mod len (empty = this machine, 127.0.0.1). A
        replica on another host needs a server_cmd that starts it there, with slot {host} (e.g. `srun --nodes=1
        --ntasks=1 --overlap -w {host} vllm serve ... --host 0.0.0.0`: scripts/slurm/psrlm-iterate.slurm); the
        driver reaches it at http://{host}:{port}.   (vllm, sglang)
    max_failed_share: requests that fail after their retries fail their problem (counted, retried on rerun); a
        search or SRLM stage in which more than this share of problems failed stops the iteration.
    """

    kind: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    static_cache: bool | str = "auto"
    base_urls: list[str] = field(default_factory=list)
    model_name: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5
    extra_body: dict = field(default_factory=dict)
    api: str = "completions"
    reasoning: bool = False
    server_cmd: str = ""
    servers: int = 1
    port: int = 8100
    tensor_parallel: int = 1
    assign_gpus: bool = True
    max_model_len: int = 4096
    server_timeout_s: float = 900.0
    server_restarts: int = 2
    server_hosts: list[str] = field(default_factory=list)
    max_failed_share: float = 0.05

    def rules(self) -> list[Rule]:
        """The checks of any engine; the run's own engine has two more (configs/rules.py: context_rules)."""
        return [
            ("kind", self.kind in ("hf", "openai", "vllm", "sglang", "transformers"),
             "choose hf, openai (a running server), or vllm / sglang / transformers (servers psrlm starts)"),
            *at_least(self, 1, "servers tensor_parallel max_model_len batch_size concurrency"),
            *at_least(self, 0, "server_restarts max_retries"),
            ("port", 1 <= self.port <= 65535, "must be a TCP port"),
            ("server_timeout_s", self.server_timeout_s > 0, "must be > 0"),
            ("max_failed_share", 0 <= self.max_failed_share <= 1, "must be in [0, 1]"),
            ("dtype", self.dtype in ("auto", *DTYPES), f"choose auto or one of {', '.join(DTYPES)}"),
            ("static_cache", _parse_bool_setting(self.static_cache) in (True, False, "auto"),
             "choose auto, true or false"),
            ("timeout_s", self.timeout_s > 0, "must be > 0"),
            ("api", self.api in ("completions", "chat"), "choose completions or chat"),
            ("reasoning", not self.reasoning or (self.kind == "openai" and self.api == "chat"),
             "OpenAI's reasoning models answer on /v1/chat/completions of a running API: set kind=openai and api=chat"),
        ]  # fmt: skip
