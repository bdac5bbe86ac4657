"""The package is built in layers: no module imports from a layer above its own, and no modules import each other
in a circle.

Layers, top to bottom (a module may import from its own layer or any layer below):

    cli         the command line
    tools       read, plan or publish around runs: plan, bench, report, report_tables, report_plots, figures,
                estimate, export/, view/
    pipeline    drive the method over a run folder: runfolder (`Run`, `cached`), m0, identity, questions, stages,
                evaluation, dry_run, iterate, summary_table, sweep, frontier, initdata/eft_pipeline, launch
    domain      the method's parts: search, srlm, train, evaluate, judge_eval, prm, engines/, initdata/, tasks/,
                tiny, checkpoints, tracking
    configs     the config schema and its checks
    foundation  records, problem_log, folders, steps, answers, grading, hardware, progress, footprint, confidence,
                benchmark_names, judge, prompts, run_layout

Where the table departs from the first plan, and why:

- judge and prompts are foundation, not domain: they are the method's text formats and rules (the verdict grammar,
  which pairs a round judges, how verdicts score; the prompt texts), pure like steps and grading, importing nothing
  of psrlm but steps; and configs checks a recipe against them (search.judge_mode and scoring against JUDGE_MODES
  and SCORINGS, the judge calls a width costs with plan_pairs, prompts.variant against VARIANTS).
- tracking is domain, not pipeline: train hands every trainer its `report_to` (tracking.trainer_args) and checks
  the tracker is installed before it loads a model; tracking itself reads only records.
- benchmark_names (foundation) holds the benchmark names and `parse_benchmarks`, split from tasks/benchmarks (which
  loads the files): configs checks `iterate.eval_benchmarks` with them.
- problem_log (foundation) holds ProblemLog, which joins records (JSONL) and folders (the writer lock): apart from
  records, folders and records no longer import each other.
- runfolder and m0 (pipeline) hold the run folder (`Run`, `cached`) and M0 (`ensure_m0`), out of iterate: the EFT
  pipeline drives them too, and iterate drives the EFT pipeline.
- run_layout (foundation) names every path inside a run folder (`RunLayout`), pure path arithmetic: the drivers
  that write a run folder and the tools that read one (report, view, export, plan) share it.
- summary_table (pipeline) holds the run's closing table and the cell formats report shares with it, and
  confidence (foundation) `mean_ci`: iterate, sweep and frontier print them, and must not import report (a tool).

Every import counts: at the top of a file or inside a function, relative or absolute. `from psrlm import x` counts
as an import of `psrlm.x` where that is a module. Importing `psrlm.a.b` is an edge to `psrlm.a.b` only (Python
also runs `psrlm/a/__init__.py`, but a package's `__init__` importing its own children is not a layering question).
"""

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "psrlm"

LAYERS = ["foundation", "configs", "domain", "pipeline", "tools", "cli"]  # bottom to top

LAYER_OF = {
    # cli
    "psrlm.cli": "cli",
    "psrlm.cli.__main__": "cli",
    "psrlm.cli.bench": "cli",
    "psrlm.cli.common": "cli",
    "psrlm.cli.data": "cli",
    "psrlm.cli.demo": "cli",
    "psrlm.cli.errors": "cli",
    "psrlm.cli.evaluate": "cli",
    "psrlm.cli.iterate": "cli",
    "psrlm.cli.main": "cli",
    "psrlm.cli.model": "cli",
    "psrlm.cli.plan": "cli",
    "psrlm.cli.runs": "cli",
    "psrlm.cli.science": "cli",
    "psrlm.cli.search": "cli",
    "psrlm.cli.show_config": "cli",
    "psrlm.cli.train": "cli",
    # tools
    "psrlm.plan": "tools",
    "psrlm.bench": "tools",
    "psrlm.report": "tools",
    "psrlm.report_tables": "tools",
    "psrlm.report_plots": "tools",
    "psrlm.figures": "tools",
    "psrlm.estimate": "tools",
    "psrlm.export": "tools",
    "psrlm.export.data": "tools",
    "psrlm.export.hub": "tools",
    "psrlm.export.models": "tools",
    "psrlm.export.run_folder": "tools",
    "psrlm.export.tables": "tools",
    "psrlm.view": "tools",
    "psrlm.view.runfolder": "tools",
    "psrlm.view.site": "tools",
    # pipeline
    "psrlm.runfolder": "pipeline",
    "psrlm.m0": "pipeline",
    "psrlm.iterate": "pipeline",
    "psrlm.identity": "pipeline",
    "psrlm.stages": "pipeline",
    "psrlm.questions": "pipeline",
    "psrlm.evaluation": "pipeline",
    "psrlm.dry_run": "pipeline",
    "psrlm.summary_table": "pipeline",
    "psrlm.sweep": "pipeline",
    "psrlm.frontier": "pipeline",
    "psrlm.initdata.eft_pipeline": "pipeline",
    "psrlm.launch": "pipeline",
    # domain
    "psrlm.search": "domain",
    "psrlm.srlm": "domain",
    "psrlm.train": "domain",
    "psrlm.evaluate": "domain",
    "psrlm.judge_eval": "domain",
    "psrlm.prm": "domain",
    "psrlm.tiny": "domain",
    "psrlm.checkpoints": "domain",
    "psrlm.tracking": "domain",
    "psrlm.engines": "domain",
    "psrlm.engines.base": "domain",
    "psrlm.engines.hf": "domain",
    "psrlm.engines.openai_api": "domain",
    "psrlm.engines.sampling": "domain",
    "psrlm.engines.servers": "domain",
    "psrlm.initdata": "domain",
    "psrlm.initdata.build": "domain",
    "psrlm.initdata.eft": "domain",
    "psrlm.initdata.eft_judging": "domain",
    "psrlm.initdata.ift": "domain",
    "psrlm.initdata.mcts": "domain",
    "psrlm.initdata.pool": "domain",
    "psrlm.initdata.segment": "domain",
    "psrlm.initdata.teacher_cache": "domain",
    "psrlm.tasks": "domain",
    "psrlm.tasks.arith": "domain",
    "psrlm.tasks.benchmarks": "domain",
    # configs
    "psrlm.configs": "configs",
    "psrlm.configs.checks": "configs",
    "psrlm.configs.costs": "configs",
    "psrlm.configs.data": "configs",
    "psrlm.configs.infra": "configs",
    "psrlm.configs.initdata": "configs",
    "psrlm.configs.iterate": "configs",
    "psrlm.configs.loader": "configs",
    "psrlm.configs.model": "configs",
    "psrlm.configs.recipe": "configs",
    "psrlm.configs.rules": "configs",
    "psrlm.configs.search": "configs",
    "psrlm.configs.train": "configs",
    # foundation
    "psrlm": "foundation",
    "psrlm.records": "foundation",
    "psrlm.problem_log": "foundation",
    "psrlm.folders": "foundation",
    "psrlm.steps": "foundation",
    "psrlm.grading": "foundation",
    "psrlm.answers": "foundation",
    "psrlm.hardware": "foundation",
    "psrlm.progress": "foundation",
    "psrlm.footprint": "foundation",
    "psrlm.confidence": "foundation",
    "psrlm.benchmark_names": "foundation",
    "psrlm.run_layout": "foundation",
    "psrlm.judge": "foundation",
    "psrlm.prompts": "foundation",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def source_files() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # `from . import x` in psrlm/a/b.py is relative to psrlm.a; in psrlm/a/__init__.py to psrlm.a too
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


@functools.cache  # read once for the whole module's tests
def import_graph() -> dict[str, set[str]]:
    files = source_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def relpath(name: str) -> str:
    path = source_files()[name]
    return str(path.relative_to(SRC.parent))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: every group of two or more modules that reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_module_has_a_layer():
    missing = sorted(set(source_files()) - set(LAYER_OF))
    assert not missing, (
        f"modules without a layer: {', '.join(missing)}; add each to LAYER_OF in tests/test_layers.py "
        f"(layers, bottom to top: {', '.join(LAYERS)})"
    )


def test_the_table_names_no_module_that_is_gone():
    gone = sorted(set(LAYER_OF) - set(source_files()))
    assert not gone, f"LAYER_OF names modules that no longer exist: {', '.join(gone)}"
    assert set(LAYER_OF.values()) <= set(LAYERS)


def test_no_import_circles():
    graph = import_graph()
    circles = strongly_connected(graph)
    lines = []
    for group in circles:
        members = set(group)
        lines.append("circle: " + ", ".join(relpath(name) for name in group))
        lines += [
            f"  {relpath(name)} -> {relpath(target)}" for name in group for target in sorted(graph[name] & members)
        ]
    assert not circles, "import circles between modules:\n" + "\n".join(lines)


def test_no_import_runs_up_a_layer():
    graph = import_graph()
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [
        f"{relpath(name)} ({LAYER_OF[name]}) -> {relpath(target)} ({LAYER_OF[target]})"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if name in LAYER_OF and target in LAYER_OF and rank[LAYER_OF[target]] > rank[LAYER_OF[name]]
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from psrlm.records import read_json", {"psrlm.records"}),
        ("from psrlm import progress", {"psrlm.progress"}),
        ("def f():\n    import psrlm.engines.base", {"psrlm.engines.base"}),
        ("from .base import Engine", {"psrlm.engines.base"}),
        ("from ..records import Problem", {"psrlm.records"}),
        ("from . import base", {"psrlm.engines.base"}),
    ],
)
def test_imports_are_read_inside_functions_and_relative(tmp_path, source, expected):
    path = tmp_path / "hf.py"
    path.write_text(source)
    known = {"psrlm", "psrlm.records", "psrlm.progress", "psrlm.engines", "psrlm.engines.base"}
    assert imported_modules("psrlm.engines.hf", path, known) == expected


MAX_LINES = 520  # "about 500": a module a newcomer reads in one sitting


def test_no_module_is_long_without_saying_why():
    """A module over ~500 lines says why in its docstring ("Over 500 lines because ..."), or is split."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Over 500 lines because" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{path.relative_to(SRC)} ({text.count(chr(10))} lines)")
    assert not long, "modules over ~500 lines with no reason in their docstring:\n" + "\n".join(long)
