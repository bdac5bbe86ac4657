"""Every path inside a run folder (`paths.run_dir`), named once.

Pure path arithmetic: nothing here reads or writes a file, so the drivers that fill a run folder (iterate, sweep,
frontier, the EFT pipeline, the single-stage commands) and the tools that read one (report, view, export, plan,
estimate) agree on where each thing lives by construction.

    <run>/
      data/                   the run's data: arith splits and level pools, ift.jsonl, eft_{train,test}.jsonl (or
                              eft_policy_*.jsonl and its eft_policy.json stamp), srlm_eft_train.jsonl,
                              fresh_questions.jsonl (the iterations' question pool) and questions.json (its counts)
      models/<name>/          model folders: M0-<key>, init-<key>, psrlm-M1, srlm-M2, policy-ift-<key>, prm-<key>, ...
      manifests/<name>.json   one per trained model: parent, data hashes, settings, metrics
      <label>/it<n>/          the search (or SRLM sampling) of iteration n: pairs.jsonl, traces.jsonl; the label is
                              the method, or a sweep's / frontier's arm
      eval/<name>/            one model's evaluation: metrics.json, <benchmark>.jsonl, summary.json, judge.json,
                              tts.json and tts/ (the test-time search's traces), equations.json
      eval/appendix_b.json    Appendix B (pairwise judging vs solution scoring)
      initdata/               `psrlm data ift|eft`: segmented IFT, the EFT pipeline's outputs, the teacher cache
      logs/runs.jsonl         what ran, with which config (one YAML per command beside it)
      servers/                managed servers' logs
      replaced/<time>/        outputs moved aside by --fresh or a changed setting
      summary.json timings.json report.md report_plots/
"""

from __future__ import annotations

from pathlib import Path

# top-level names that are not searches (a search folder is <label>/it<n>/)
NOT_SEARCHES = frozenset({"data", "models", "eval", "manifests", "logs", "replaced", "servers", "bench", "view",
                          "report_plots"})  # fmt: skip


class RunLayout:
    """The paths of the run folder `dir`."""

    def __init__(self, dir: Path | str):
        self.dir = Path(dir)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.dir)!r})"

    # ---------------------------------------------------------------------------------------- top level

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def models(self) -> Path:
        return self.dir / "models"

    @property
    def manifests(self) -> Path:
        return self.dir / "manifests"

    @property
    def evals(self) -> Path:
        return self.dir / "eval"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def run_log(self) -> Path:
        return self.logs / "runs.jsonl"

    @property
    def servers(self) -> Path:
        return self.dir / "servers"

    @property
    def initdata(self) -> Path:
        return self.dir / "initdata"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    @property
    def timings(self) -> Path:
        return self.dir / "timings.json"

    @property
    def report(self) -> Path:
        return self.dir / "report.md"

    @property
    def report_plots(self) -> Path:
        return self.dir / "report_plots"

    @property
    def bench(self) -> Path:
        """`psrlm bench`'s results (bench.json)."""
        return self.dir / "bench"

    @property
    def tracking(self) -> Path:
        """TensorBoard event files and trackio's store."""
        return self.dir / "tracking"

    # ------------------------------------------------------------------------------------------ models

    def model(self, name: str) -> Path:
        return self.models / name

    def m0(self, key: str) -> Path:
        """M0 pre-trained into this run, named by the key of the settings that built it."""
        return self.models / f"M0-{key}"

    def init_model(self, key: str) -> Path:
        """The tiny model with its trained tokenizer (`psrlm model init`), before any pre-training."""
        return self.models / f"init-{key}"

    def manifest(self, name: str) -> Path:
        return self.manifests / f"{name}.json"

    # ------------------------------------------------------------------------------------------ searches

    def searches(self, label: str) -> Path:
        """The folder of every search of `label` (its it<n>/ folders)."""
        return self.dir / label

    def search(self, label: str, it: int) -> Path:
        return self.searches(label) / f"it{it}"

    def pairs(self, label: str, it: int) -> Path:
        return self.search(label, it) / "pairs.jsonl"

    def traces(self, label: str, it: int) -> Path:
        return self.search(label, it) / "traces.jsonl"

    # ---------------------------------------------------------------------------------------- evaluation

    def evaluation(self, name: str) -> Path:
        """eval/<name>/: one model's evaluation (per-problem JSONL per benchmark and the JSON results below)."""
        return self.evals / name

    def eval_metrics(self, name: str) -> Path:
        return self.evaluation(name) / "metrics.json"

    def eval_rows(self, name: str, benchmark: str) -> Path:
        return self.evaluation(name) / f"{benchmark}.jsonl"

    def eval_summary(self, name: str) -> Path:
        """Every benchmark result on disk of model `name`, per benchmark (evaluate.evaluate_benchmarks)."""
        return self.evaluation(name) / "summary.json"

    def legacy_eval(self, name: str) -> Path:
        """eval/<name>.json: where runs made before eval/<name>/ kept a model's metrics (read, never written)."""
        return self.evals / f"{name}.json"

    def eval_judge(self, name: str) -> Path:
        return self.evaluation(name) / "judge.json"

    def eval_tts(self, name: str) -> Path:
        return self.evaluation(name) / "tts.json"

    def tts_search(self, name: str) -> Path:
        """The test-time search of model `name` (its traces, resumable)."""
        return self.evaluation(name) / "tts"

    def tts_traces(self, name: str) -> Path:
        return self.tts_search(name) / "traces.jsonl"

    def eval_equations(self, name: str) -> Path:
        return self.evaluation(name) / "equations.json"

    @property
    def appendix_b(self) -> Path:
        return self.evals / "appendix_b.json"

    # ---------------------------------------------------------------------------------------------- data

    def data_file(self, name: str) -> Path:
        """data/<name>.jsonl: an arith split (arith_train, arith_test, ...) or any other of the run's data files."""
        return self.data / f"{name}.jsonl"

    @property
    def fresh_questions(self) -> Path:
        """The pool the iterations draw their questions from (level 0 of a frontier run)."""
        return self.data / "fresh_questions.jsonl"

    @property
    def question_counts(self) -> Path:
        """What the pool lost to test-set overlaps, initialisation data and repeats, with the settings that made it."""
        return self.data / "questions.json"

    def level_pool(self, level: int) -> Path:
        """The question pool of a difficulty level: 0 is the fresh pool, then arith.levels."""
        return self.fresh_questions if level == 0 else self.data_file(f"arith_level{level}")

    @property
    def ift(self) -> Path:
        """The embedded domain's IFT step solutions."""
        return self.data / "ift.jsonl"

    def eft(self, split: str, policy: bool = False) -> Path:
        """The embedded domain's EFT `split` (train / test): oracle-built, or from the policy's own candidate steps."""
        return self.data / (f"eft_policy_{split}.jsonl" if policy else f"eft_{split}.jsonl")

    @property
    def eft_policy_stamp(self) -> Path:
        return self.data / "eft_policy.json"

    @property
    def srlm_eft(self) -> Path:
        """The embedded domain's solution-scoring data of SRLM's M1."""
        return self.data / "srlm_eft_train.jsonl"
