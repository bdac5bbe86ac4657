"""The names of the benchmarks a recipe may evaluate on (`iterate.eval_benchmarks`, `eval_tts_benchmark`) and
their groups (all, paper, arith), apart from loading them (tasks/benchmarks): configs checks a recipe's names
here, below the domain modules that read the files.
"""

from __future__ import annotations

import re

from psrlm.answers import BENCHMARKS
from psrlm.records import RecordError

# the embedded domain's held-out splits, read from a run's data folder ("arith" = the two test splits; arith_valid
# and arith_valid_hard are for choosing settings by experiment, never the test splits)
ARITH_SPLITS = ("arith_test", "arith_hard")
ARITH_VALID = "arith_valid"
ARITH_VALID_HARD = "arith_valid_hard"  # the validation split at the hard split's difficulty
ARITH_NAMES = (
    *ARITH_SPLITS,
    ARITH_VALID,
    ARITH_VALID_HARD,
)  # every split with gold step chains (the oracle reads them)
ALL_BENCHMARKS = (*ARITH_NAMES, *BENCHMARKS)
# the difficulty ladder of iterate.schedule=frontier (arith.levels): level<k> pools and level<k>_probe sets
ARITH_LEVEL = re.compile(r"arith_level\d+(_probe)?")


def in_run_data(name: str) -> bool:
    """A split that lives in a run's data folder (the embedded domain's), not under paths.data_dir."""
    return name in ARITH_NAMES or bool(ARITH_LEVEL.fullmatch(name))


class BenchmarkError(RecordError):
    """A benchmark row that cannot be read as the loader expects; the message names file and line. (Lines that
    are not JSON objects at all raise `records.iter_json_rows`'s RecordError.)"""


def parse_benchmarks(spec: str | list[str]) -> list[str]:
    """`"gsm8k,math500"`, `"all"`, `"arith"` or a list -> validated benchmark names, in the order given."""
    names = spec if isinstance(spec, list) else [s.strip() for s in spec.split(",") if s.strip()]
    out: list[str] = []
    for n in names:
        expanded = {"all": list(BENCHMARKS), "paper": [b for b in BENCHMARKS if b != "math500"],
                    "arith": list(ARITH_SPLITS)}.get(n, [n])  # fmt: skip
        for e in expanded:
            if e not in ALL_BENCHMARKS and not ARITH_LEVEL.fullmatch(e):
                raise BenchmarkError(f"unknown benchmark {e!r}; known: {', '.join(ALL_BENCHMARKS)}, all, paper, arith")
            if e not in out:
                out.append(e)
    return out
