"""Answer equivalence, following the Qwen2.5-Math evaluation conventions.

The pipeline for one model response is:

1. `extract_answer` (answers.py) picks the answer text: the last `\\boxed{...}` (or `\\fbox{...}`), else what
   follows "the answer is", else the last number in the text.
2. `is_equiv(gold, pred)` decides correctness. A cheap *fast path* runs first: both sides go through
   `strip_answer` (a light version of Qwen's `strip_string`) and are compared as strings, and as numbers when both
   are plain numbers (relative tolerance 1e-4, with Qwen's `include_percentage` alternatives gold/100 and
   gold*100). Only pairs the fast path cannot decide go to math-verify (`verify(parse(gold), parse(pred))`, gold
   first), which is the slow and occasionally non-terminating part (sympy simplification).
3. `Grader` runs `is_equiv` for many pairs in a "spawn" process pool with a per-item time limit. math-verify's own
   timeouts use SIGALRM, which only works in the main thread and would interfere with a host program, so they are
   switched off (`parsing_timeout=None`, `timeout_seconds=None`) and time is bounded by killing hung workers
   instead. The fast path runs in the parent, so the pool is only started when some pair actually needs it.

`gold_answer` (answers.py) reads the reference answer of one benchmark row the way Qwen's `parse_ground_truth` does.

Differences from Qwen on purpose: Qwen's unit list strips single letters such as "a", "c", "m" anywhere in an
answer (so "a+b" and "c+b" both become "+b"); here only `\\text{...}` units at the end and a whitelist of unit words
after a plain number are removed. Qwen's `replace("and", "")`, `j`->`i` and blanket `x=` removal are also left out,
as they make distinct answers compare equal.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.pool
import re
import time
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from psrlm.answers import braced_group, extract_answer

log = logging.getLogger(__name__)

# Test hook, documented: a worker handed this exact prediction sleeps for a minute, which lets the test suite
# exercise the Grader's timeout path without monkeypatching (patches do not cross a "spawn" process boundary).
TEST_SLEEP_SENTINEL = "__psrlm_test_sleep__"

# ---------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------

# Unit words removed after a plain number ("18 dollars", "5 square units"). A whitelist rather than Qwen's list of
# fragments, because removing short fragments ("a", "m", "c") anywhere turns distinct algebraic answers equal.
_UNIT_WORDS = (
    "dollars dollar cents cent euros euro pounds pound lbs lb ounces ounce oz grams gram kg mg tons ton "
    "meters meter metres metre centimeters centimeter cm mm km kilometers kilometer inches inch feet foot ft "
    "yards yard miles mile mph kph liters liter litres litre ml gallons gallon quarts quart cups cup "
    "seconds second sec minutes minute min hours hour hrs hr days day weeks week months month years year "
    "degrees degree percent square sq cubic units unit people persons students children times ways"
).split()
_UNIT_WORD_RE = "|".join(sorted(_UNIT_WORDS, key=len, reverse=True))
_NUM_WITH_UNITS_RE = re.compile(
    rf"^(-?[\d.,/]+)\s+(?:(?:{_UNIT_WORD_RE})\b\s*)+(?:\^\s*\{{?\d\}}?)?$",
    re.IGNORECASE,
)
# A trailing `\text{ cm}` (optionally squared/cubed) is a unit. `\mathrm` only counts with two or more letters so
# that `2\pi\mathrm{i}` keeps its imaginary unit.
_TRAILING_TEXT_UNIT_RE = re.compile(
    r"\\(?:text|textrm|mbox)\{[^{}]*\}(?:\^\{?\d\}?)?$|\\mathrm\{\s*[a-zA-Z]{2,}[^{}]*\}(?:\^\{?\d\}?)?$"
)
_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mbox)\{([^{}]*)\}")
# `x = 5`, `a_1 = 5`, `\theta = 5` -> `5`; only a single assignment (one "=") counts.
_ASSIGNMENT_RE = re.compile(r"^(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*=\s*([^=]+)$")
_MEMBERSHIP_RE = re.compile(r"^[a-zA-Z]\s*\\in\s*")
_PLAIN_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{x}` -> `\\frac{1}{x}`, `\\frac{a}b` -> `\\frac{a}{b}` (single tokens)."""
    s = re.sub(r"\\frac\s*([^{\s\\])\s*([^{\s\\])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([^{\s\\])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([^{\s\\])", r"\\frac\1{\2}", s)
    return s


def _strip_outer_braces(s: str) -> str:
    """`{5}` -> `5` when the first brace closes at the very end (a pure grouping); `{a}{b}` is left alone."""
    while s.startswith("{") and braced_group(s, 0) == s[1:-1]:
        s = s[1:-1].strip()
    return s


def strip_answer(s: str) -> str:
    """Light normalisation of an answer string for comparison, in the spirit of Qwen's `strip_string`.

    Removes `$`, whitespace, trailing periods, `\\!`-style spacing, `\\left`/`\\right`, degree marks, `%`, trailing
    units (`\\text{ cm}`, "18 dollars"), thousands commas in plain numbers, trailing `.0`; rewrites `\\dfrac`/`\\tfrac`
    to `\\frac`, `\\frac12` to `\\frac{1}{2}`, `\\sqrt2` to `\\sqrt{2}`, `x = 5` to `5`, `\\text{(C)}` to `C`.
    """
    s = str(s).strip().replace("\n", " ")
    s = s.replace("\\$", "").replace("$", "")  # money signs and math delimiters
    s = re.sub(r"\\[()\[\]]", "", s)  # \( \) \[ \] math delimiters
    s = s.strip().rstrip(".").strip()

    s = s.replace("\\!", "")
    s = re.sub(r"\\[,;:> ]|\\q?quad(?![a-zA-Z])", " ", s)
    s = re.sub(r"\\(?:displaystyle|textstyle)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)\.", "", s)  # invisible delimiters
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\neq(?![a-zA-Z])", r"\\ne", s)
    s = re.sub(r"\\leq(?:slant)?(?![a-zA-Z])", r"\\le", s)
    s = re.sub(r"\\geq(?:slant)?(?![a-zA-Z])", r"\\ge", s)
    s = re.sub(r"\\begin\{array\}\{[^{}]*\}", r"\\begin{pmatrix}", s)
    s = s.replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])", "", s)
    s = s.replace("\\%", "").replace("%", "")  # percentages are matched numerically (see is_equiv)
    s = s.strip()

    # Units: trailing \text{...} (repeatedly, "5\text{ m}\text{ long}"), then unit words after a plain number; each
    # only when something is left, so that an answer that is itself text ("\text{Evelyn}") survives.
    while True:
        stripped = _TRAILING_TEXT_UNIT_RE.sub("", s).strip()
        if not stripped or stripped == s:
            break
        s = stripped
    m = _NUM_WITH_UNITS_RE.match(s)
    if m:
        s = m.group(1)

    for _ in range(3):  # nested wrappers, innermost first
        # Spaces around the content keep `\pi\mathrm{i}` from fusing into `\pii`; spaces are dropped below.
        s = _TEXT_WRAPPER_RE.sub(r" \1 ", s)
    s = s.strip()

    m = _ASSIGNMENT_RE.match(s)
    if m:
        s = m.group(1).strip()
    s = _MEMBERSHIP_RE.sub("", s)

    s = re.sub(r"\\varnothing(?![a-zA-Z])", r"\\emptyset", s)
    s = re.sub(r"\binfinity\b", r"\\infty", s)
    s = re.sub(r"(?<!\\)\binf\b", r"\\infty", s)
    s = re.sub(r"\\sqrt\s*([^{\[\\\s])", r"\\sqrt{\1}", s)
    s = _fix_fracs(s)

    # Leading zeros for bare decimals: " .5" / "{.5" / ".5" / "-.5".
    s = re.sub(r"(^|[\s{(\[,=-])\.(\d)", r"\g<1>0.\2", s)

    # Spaces carry no meaning except between a command and a following letter (`\pi r` is not `\pir`).
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(\\[a-zA-Z]+) (?=[a-zA-Z])", "\\1\x00", s)
    s = s.replace(" ", "").replace("\x00", " ")

    if _PLAIN_THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)  # 27.0 -> 27, (1.50, 2.0) -> (1.50, 2)
    if s in ("(-\\infty,\\infty)", "\\{\\}"):
        s = {"(-\\infty,\\infty)": "\\mathbb{R}", "\\{\\}": "\\emptyset"}[s]
    m = re.fullmatch(r"\(([A-Z])\)", s)  # multiple-choice "(C)" -> "C"
    if m:
        s = m.group(1)
    s = _strip_outer_braces(s)
    return s.rstrip(".")


# ---------------------------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------------------------

_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_SLASH_FRAC_RE = re.compile(r"(-?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)")
_LATEX_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}")


def _to_number(s: str) -> float | None:
    """The value of a normalised answer that is a plain number (`-3`, `2.5`, `3/4`, `-\\frac{3}{4}`), else None."""
    if _PLAIN_NUMBER_RE.fullmatch(s):
        return float(s)
    m = _SLASH_FRAC_RE.fullmatch(s)
    if m:
        den = float(m.group(2))
        return float(m.group(1)) / den if den else None
    m = _LATEX_FRAC_RE.fullmatch(s)
    if m:
        den = float(m.group(3))
        if not den:
            return None
        value = float(m.group(2)) / den
        return -value if m.group(1) else value
    return None


_INTEGER_RE = re.compile(r"-?\d+")


def _numbers_equal(g: str, p: str, include_percentage: bool) -> bool | None:
    """Compare two normalised answers as numbers; None unless both are plain numbers.

    Qwen's is_numerical_equal: relative tolerance 1e-4, and with include_percentage the gold may also be read as a
    percentage either way (gold/100, gold*100). Deviation: two integers must match exactly, because a relative
    tolerance would accept 70001 for 70000 (and GSM8K/AIME-style answers are exact integers).
    """
    if _INTEGER_RE.fullmatch(g) and _INTEGER_RE.fullmatch(p):
        gold, pred = Fraction(int(g)), Fraction(int(p))
        candidates: tuple = (gold / 100, gold, gold * 100) if include_percentage else (gold,)
        return pred in candidates
    gn, pn = _to_number(g), _to_number(p)
    if gn is None or pn is None:
        return None
    candidates = (gn / 100, gn, gn * 100) if include_percentage else (gn,)
    return any(math.isclose(c, pn, rel_tol=1e-4) for c in candidates)


def _fast_equiv(gold: str, pred: str | None, include_percentage: bool = True) -> bool | None:
    """The cheap part of `is_equiv`: True/False when decided by normalised strings or plain numbers, else None."""
    if pred is None or gold is None:
        return False
    g, p = strip_answer(gold), strip_answer(pred)
    if not g or not p:
        return False  # an empty gold (a data defect) or empty prediction matches nothing
    if g == p:
        return True
    # Two plain numbers are decided here (nothing for sympy to add); anything else is left to math-verify.
    return _numbers_equal(g, p, include_percentage)


def _wrap(s: str) -> str:
    # math-verify extracts answers from LaTeX environments; bare "(1,2)" or "\{2,1\}" parse to nothing otherwise.
    return "\\boxed{" + s + "}"


def _mv_equiv(gold: str, pred: str) -> bool:
    """math-verify comparison, gold first. Tried on the raw strings and then, if different, the normalised ones."""
    from math_verify import parse, verify  # imported lazily: ~0.5 s, and only needed for undecided pairs

    attempts = [(gold.strip().strip("$").strip(), pred.strip().strip("$").strip())]
    normalised = (strip_answer(gold), strip_answer(pred))
    if normalised != attempts[0]:
        attempts.append(normalised)
    for g, p in attempts:
        if not g or not p:
            continue
        gold_parsed = parse(_wrap(g), parsing_timeout=None)
        pred_parsed = parse(_wrap(p), parsing_timeout=None)
        if gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None):
            return True
    return False


def is_equiv(gold: str, pred: str | None, *, include_percentage: bool = True) -> bool:
    """Whether `pred` is a correct answer for `gold`. False for None/empty input and on any internal error.

    Runs unbounded in the calling process; use `Grader` when time must be bounded.
    """
    try:
        fast = _fast_equiv(gold, pred, include_percentage)
        if fast is not None or pred is None:
            return bool(fast)
        return _mv_equiv(gold, pred)
    except Exception:  # a grading failure must count as wrong, never crash an evaluation run
        log.debug("is_equiv failed for gold=%r pred=%r", gold, pred, exc_info=True)
        return False


# ---------------------------------------------------------------------------------------------------------------
# Bounded-time grading in a process pool
# ---------------------------------------------------------------------------------------------------------------


class _DropTimeoutWarning(logging.Filter):
    # math-verify warns once per process that its timeouts are off; in a Grader worker the pool provides them.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _worker_init() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the parent stops the run (and then the pool); a worker that took the
    # signal itself would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutWarning())
    # Pay the import and first-call cost (sympy, lark grammar) here, outside any item's time budget.
    _mv_equiv("1", "1")


def _worker_ping() -> bool:
    return True


def _grade_chunk(pairs: list[tuple[str, str | None]], include_percentage: bool = True) -> list[bool]:
    out = []
    for gold, pred in pairs:
        if pred == TEST_SLEEP_SENTINEL:
            time.sleep(60)  # test hook, see TEST_SLEEP_SENTINEL
        out.append(is_equiv(gold, pred, include_percentage=include_percentage))
    return out


class Grader:
    """`is_equiv` over many pairs with a time limit per item, in a pool of "spawn" worker processes.

    Spawn rather than fork because the parent may hold torch (threads, CUDA state) that a forked child would
    inherit in a broken state. Pairs the fast path decides never leave the parent; the rest go to workers in
    chunks. A chunk is waited for at most `timeout_s`; if it overruns, the pool is killed and replaced and that
    chunk's items are re-run one by one, each with `timeout_s`; an item that overruns alone counts as wrong and
    increments `timeouts`. Everything else keeps its result. No signals are used, so this works from any thread.

    Use as a context manager (or call `close`) so the worker processes are stopped. One `grade` call at a time:
    an instance is not meant to be shared between threads.

    `include_percentage`: Qwen2.5-Math's rule that a plain-number answer of 100x or 1/100x the gold is also right
    (meant for percentages; it also passes wrong answers: gold 25, answer 2500). On for numbers comparable with
    the paper's, off for strict grading (`grading.include_percentage`).
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 5.0,
        chunk_size: int = 16,
        startup_timeout_s: float = 120.0,
        include_percentage: bool = True,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.chunk_size = max(1, chunk_size)
        self.startup_timeout_s = startup_timeout_s
        self.include_percentage = include_percentage
        self.timeouts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: multiprocessing.pool.Pool | None = None

    # -- pool lifecycle ------------------------------------------------------------------------------------------

    def _ensure_pool(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            pool = self._ctx.Pool(self.workers, initializer=_worker_init)
            try:
                # Worker start-up (interpreter, imports) must not eat into the first item's budget: wait until
                # at least one worker has initialised; jobs are only pulled by initialised workers.
                pool.apply_async(_worker_ping).get(timeout=self.startup_timeout_s)
            except BaseException:
                pool.terminate()
                pool.join()
                raise
            self._pool = pool
        return self._pool

    def _kill_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        """Stop the worker processes (terminate: results already returned need nothing more from them)."""
        self._kill_pool()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown may have torn down multiprocessing already
            pass

    # -- grading -------------------------------------------------------------------------------------------------

    def grade(self, pairs: Sequence[tuple[str, str | None]]) -> list[bool]:
        """`is_equiv(gold, pred)` for each pair, in order; a pair that runs past `timeout_s` counts as False."""
        results: list[bool | None] = [None] * len(pairs)
        pending: list[int] = []
        for i, (gold, pred) in enumerate(pairs):
            try:
                fast = _fast_equiv(gold, pred, self.include_percentage)
            except Exception:  # same contract as is_equiv
                fast = False
            if fast is None or pred == TEST_SLEEP_SENTINEL:
                pending.append(i)
            else:
                results[i] = fast
        if pending:
            self._run_in_pool(pairs, pending, results)
        return [bool(r) for r in results]

    def grade_one(self, gold: str, pred: str | None) -> bool:
        return self.grade([(gold, pred)])[0]

    def _run_in_pool(self, pairs: Sequence[tuple[str, str | None]], pending: list[int], results: list[Any]) -> None:
        jobs: deque[list[int]] = deque(
            pending[k : k + self.chunk_size] for k in range(0, len(pending), self.chunk_size)
        )
        while jobs:
            pool = self._ensure_pool()
            inflight = [(job, pool.apply_async(_grade_chunk, ([pairs[i] for i in job], self.include_percentage)))
                        for job in jobs]  # fmt: skip
            jobs.clear()
            # Waiting in submission order keeps each budget honest: when job k is waited for, jobs before it are
            # done, so it is already running or is the next one an idle worker takes.
            for k, (job, handle) in enumerate(inflight):
                try:
                    out = handle.get(timeout=self.timeout_s)
                except multiprocessing.TimeoutError:
                    # A worker is stuck (or died and took the job with it); only killing the pool frees it.
                    self._kill_pool()
                    if len(job) > 1:
                        jobs.extend([i] for i in job)
                    else:
                        results[job[0]] = False
                        self.timeouts += 1
                        log.warning("grading timed out after %.1f s: gold=%r pred=%r", self.timeout_s, *pairs[job[0]])
                    jobs.extend(j for j, _ in inflight[k + 1 :])  # killed with the pool; resubmit
                    break
                except Exception:  # e.g. an unpicklable input; count the job as wrong, go on
                    log.warning("grading job failed", exc_info=True)
                    for i in job:
                        results[i] = False
                else:
                    for i, r in zip(job, out, strict=True):
                        results[i] = r


def grade_responses(golds: list[str], responses: list[str], grader: Grader | None = None) -> list[bool]:
    """`extract_answer` on each response, then grade against the gold at the same position."""
    if len(golds) != len(responses):
        raise ValueError(f"golds and responses differ in length: {len(golds)} vs {len(responses)}")
    pairs = [(gold, extract_answer(resp)) for gold, resp in zip(golds, responses, strict=True)]
    if grader is not None:
        return grader.grade(pairs)
    with Grader() as own:
        return own.grade(pairs)
