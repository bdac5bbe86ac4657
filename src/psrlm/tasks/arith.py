"""The embedded domain: procedurally generated grade-school word problems with a step oracle.

    psrlm data arith --config configs/demo.yaml      # writes the training pool and the held-out test splits

A problem follows one person's count of one item through 2-8 operations (find more, give away, buy boxes of,
sell packs of, double, share equally). Every problem carries its gold step chain, one equation per step, and the
set of quantities a solution needs. The oracle (`label_step`) decides whether a step a model wrote is correct:
its arithmetic is right and it computes a needed quantity from values already established. That is the stand-in
for the paper's PRM + teacher: evaluation and data building may read it; the self-rewarding loop never does.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass

from psrlm.records import Problem
from psrlm.steps import find_boxed, render_steps

NAMES = [("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Sam", "he"), ("Zoe", "she"), ("Max", "he"),
         ("Ivy", "she"), ("Ben", "he"), ("Amy", "she"), ("Tom", "he"), ("Eva", "she"), ("Jay", "he")]  # fmt: skip
ITEMS = ["apples", "pens", "stamps", "marbles", "cards", "shells", "stickers", "coins", "books", "eggs",
         "beads", "cookies"]  # fmt: skip
BOXES = ["boxes", "bags", "packs", "jars", "crates"]
FRIENDS = ["a friend", "a neighbor", "the class", "a cousin", "the teacher", "a classmate"]
MULT_WORDS = {2: "doubles", 3: "triples"}
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}
EQUATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×÷])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
ERROR_KINDS = ("arithmetic_slip", "wrong_operand", "wrong_operation", "skipped_quantity", "premature_answer")


@dataclass(frozen=True)
class Equation:
    a: int
    op: str
    b: int
    c: int

    def text(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.c}"


@dataclass(frozen=True)
class Difficulty:
    min_ops: int
    max_ops: int
    max_number: int


# --------------------------------------------------------------------------------------------- generation


def _cap(max_number: int) -> int:
    """Largest running count allowed: keeps answers at 3-4 digits so they stay learnable but not trivial."""
    return max(200, max_number * 20)


def generate_problem(rng: random.Random, diff: Difficulty, pid: str, source: str) -> Problem:
    name, pron = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    Pron = pron.capitalize()
    cur = rng.randint(5, diff.max_number)
    question = [f"{name} has {cur} {item}."]
    givens = [cur]
    steps: list[tuple[str, Equation]] = []  # (description, equation) per gold step
    n_ops = rng.randint(diff.min_ops, diff.max_ops)
    cap = _cap(diff.max_number)
    for _ in range(n_ops):
        kind = _pick_op(rng, cur, diff.max_number, cap)
        if kind == "add":
            k = rng.randint(2, diff.max_number)
            question.append(f"{Pron} finds {k} more {item}.")
            eq = Equation(cur, "+", k, cur + k)
            steps.append((f"{Pron} finds {k} more, so {pron} has", eq))
        elif kind == "sub":
            k = rng.randint(2, min(cur - 1, diff.max_number))
            question.append(f"{Pron} gives {k} {item} to {rng.choice(FRIENDS)}.")
            eq = Equation(cur, "-", k, cur - k)
            steps.append((f"After giving {k} away, {pron} has", eq))
        elif kind in ("box_add", "box_sub"):
            box = rng.choice(BOXES)
            b_max = min(12, diff.max_number)
            if kind == "box_sub":  # sell strictly fewer than she has
                pairs = [(a, b) for a in range(2, 10) for b in range(2, b_max + 1) if a * b < cur]
                a, b = rng.choice(pairs)
                question.append(f"{Pron} sells {a} {box} with {b} {item} in each.")
                steps.append((f"{Pron} sells {a} {box} of {b}, which is", Equation(a, "*", b, a * b)))
                steps.append((f"{Pron} has", Equation(cur, "-", a * b, cur - a * b)))
            else:
                a, b = rng.randint(2, 9), rng.randint(2, b_max)
                question.append(f"{Pron} buys {a} {box} with {b} {item} in each.")
                steps.append((f"{Pron} buys {a} {box} of {b}, which is", Equation(a, "*", b, a * b)))
                steps.append((f"{Pron} has", Equation(cur, "+", a * b, cur + a * b)))
            eq = steps[-1][1]
            givens += [a, b]
            cur = eq.c
            continue
        elif kind == "mul":
            k = rng.choice([2, 3])
            question.append(f"Then the number of {item} {name} has {MULT_WORDS[k]}.")
            eq = Equation(cur, "*", k, cur * k)
            steps.append((f"The number {MULT_WORDS[k]}, so {pron} has", eq))
        else:  # div
            k = rng.choice([d for d in range(2, 7) if cur % d == 0])
            question.append(f"{Pron} splits the {item} into {k} equal piles and keeps one pile.")
            eq = Equation(cur, "/", k, cur // k)
            steps.append((f"Splitting into {k} piles, one pile is", eq))
        givens.append(eq.b)
        cur = eq.c
    question.append(f"How many {item} does {name} have now?")
    gold_steps = [f"{desc} {eq.text()}." for desc, eq in steps]
    gold_steps[-1] += f" The answer is \\boxed{{{cur}}}."
    equations = [eq for _, eq in steps]
    meta = {
        "steps": gold_steps,
        "equations": [[e.a, e.op, e.b, e.c] for e in equations],
        "givens": sorted(set(givens)),
        "n_ops": n_ops,
        "max_number": diff.max_number,
        "hash": canonical_hash(givens[0], equations),
    }
    return Problem(id=pid, question=" ".join(question), answer=str(cur), source=source, meta=meta)


def _pick_op(rng: random.Random, cur: int, max_number: int, cap: int) -> str:
    options = ["add", "box_add"]
    if cur > 3:
        options += ["sub", "sub"]
    if cur >= 5:
        options.append("box_sub")
    if cur * 3 <= cap:
        options.append("mul")
    if cur >= 4 and any(cur % d == 0 for d in range(2, 7)):
        options.append("div")
    if cur > cap:  # too big: only shrinking operations
        options = [o for o in options if o in ("sub", "box_sub", "div")] or ["sub"]
    return rng.choice(options)


def canonical_hash(start: int, equations: list[Equation]) -> str:
    """Identity of a problem's arithmetic, independent of names and items: used to keep splits disjoint."""
    sig = f"{start}|" + "|".join(e.text() for e in equations)
    return hashlib.sha256(sig.encode()).hexdigest()[:16]


def generate_split(seed: int, n: int, diff: Difficulty, source: str, exclude: set[str] | None = None) -> list[Problem]:
    """`n` distinct problems (by canonical hash), none of whose hashes is in `exclude`."""
    rng = random.Random(f"{source}:{seed}")
    seen = set(exclude or ())
    out: list[Problem] = []
    while len(out) < n:
        p = generate_problem(rng, diff, f"{source}-{len(out):05d}", source)
        if p.meta["hash"] in seen:
            continue
        seen.add(p.meta["hash"])
        out.append(p)
    return out


def free_form_solution(problem: Problem) -> str:
    """The gold solution as plain prose, no step markers: the raw text the base model M0 is pre-trained on."""
    return " ".join(problem.meta["steps"])


def pretraining_text(problem: Problem, step_layout: bool = False) -> str:
    """One problem as M0's raw domain text: the question, then its gold solution as prose or as "Step n:" lines
    (`arith.pretrain_step_share` decides which; `psrlm eval --equations` reads the prose the same way)."""
    if step_layout:
        return f"{problem.question}\n{render_steps(problem.meta['steps'])}"
    return f"{problem.question} {free_form_solution(problem)}"


# ------------------------------------------------------------------------------------------------ oracle


@dataclass(frozen=True)
class StepLabel:
    correct: bool
    reason: str


def parse_equations(step: str) -> list[Equation]:
    out = []
    for a, op, b, c in EQUATION.findall(step):
        op = {"x": "*", "×": "*", "÷": "/"}.get(op, op)
        try:
            out.append(Equation(int(float(a)), op, int(float(b)), int(float(c))))
        except ValueError:
            continue
    return out


def _eq_is_right(e: Equation) -> bool:
    if e.op == "/":
        return e.b != 0 and e.a % e.b == 0 and e.a // e.b == e.c
    return OPS[e.op](e.a, e.b) == e.c


def _derivations(problem: Problem, prev_steps: list[str]) -> tuple[set[int], Counter]:
    """Values a step may use (question numbers + needed quantities correctly derived so far) and how often each
    needed quantity has been derived (a chain may need the same value twice, e.g. two packs of 2 * 2)."""
    needed = Counter(e[3] for e in problem.meta["equations"])
    values = set(problem.meta["givens"])
    derived: Counter = Counter()
    for s in prev_steps:
        for e in parse_equations(s):
            if _eq_is_right(e) and derived[e.c] < needed[e.c] and {e.a, e.b} <= values:
                values.add(e.c)
                derived[e.c] += 1
    return values, derived


def established_values(problem: Problem, prev_steps: list[str]) -> set[int]:
    return _derivations(problem, prev_steps)[0]


def label_step(problem: Problem, prev_steps: list[str], step: str) -> StepLabel:
    """Is `step` a correct next step after `prev_steps`? Reads the gold chain: never call it in the loop."""
    needed = Counter(e[3] for e in problem.meta["equations"])
    values, derived = _derivations(problem, prev_steps)
    eqs = parse_equations(step)
    boxes = find_boxed(step)
    if not eqs and not boxes:
        return StepLabel(False, "no computation")
    for e in eqs:
        if not _eq_is_right(e):
            return StepLabel(False, f"arithmetic: {e.a} {e.op} {e.b} is not {e.c}")
        if not {e.a, e.b} <= values:
            return StepLabel(False, f"uses a value not established: {e.text()}")
        if e.c not in needed:
            return StepLabel(False, f"computes a quantity the solution does not need: {e.text()}")
        if derived[e.c] >= needed[e.c]:
            return StepLabel(False, f"repeats an earlier result: {e.text()}")
        values.add(e.c)
        derived[e.c] += 1
    if boxes:
        answer = boxes[-1].replace(",", "").strip()
        if answer != problem.answer:
            return StepLabel(False, f"boxed {answer} is not the answer")
        if int(problem.answer) not in values:
            return StepLabel(False, "boxes the answer before deriving it")
    return StepLabel(True, "ok")


def label_solution(problem: Problem, steps: list[str]) -> list[StepLabel]:
    return [label_step(problem, steps[:i], s) for i, s in enumerate(steps)]


# ------------------------------------------------------------------------------------- realistic errors


def corrupt_step(problem: Problem, index: int, kind: str, rng: random.Random) -> str | None:
    """Gold step `index` rewritten with an error of `kind`; None when that kind does not apply here.

    The result is always checked against the oracle, so a "corruption" that happens to be right is never used.
    """
    gold = problem.meta["steps"]
    eqs = [Equation(*e) for e in problem.meta["equations"]]
    step, e = gold[index], eqs[index]
    is_last = index == len(gold) - 1
    candidate: str | None = None
    if kind == "arithmetic_slip":
        delta = rng.choice([-10, -2, -1, 1, 2, 10])
        wrong = e.c + delta
        if wrong < 0:
            return None
        candidate = _replace_equation(step, e, Equation(e.a, e.op, e.b, wrong), is_last)
    elif kind == "wrong_operand":
        others = [g for g in problem.meta["givens"] if g not in (e.a, e.b)]
        if not others:
            return None
        x = rng.choice(others)
        a, b = (x, e.b) if rng.random() < 0.5 else (e.a, x)
        if e.op == "/" and (b == 0 or a % b):
            return None
        if e.op == "-" and a < b:
            return None
        candidate = _replace_equation(step, e, Equation(a, e.op, b, OPS[e.op](a, b)), is_last)
    elif kind == "wrong_operation":
        op = {"+": "-", "-": "+", "*": "+", "/": "*"}[e.op]
        if op == "-" and e.a < e.b:
            return None
        candidate = _replace_equation(step, e, Equation(e.a, op, e.b, OPS[op](e.a, e.b)), is_last)
    elif kind == "skipped_quantity":
        # Apply the *next* operation to the value from before this one, as if this quantity were forgotten.
        if is_last or eqs[index + 1].a != e.c:
            return None
        nxt = eqs[index + 1]
        if nxt.op == "/" and e.a % nxt.b:
            return None
        if nxt.op == "-" and e.a < nxt.b:
            return None
        skipped = Equation(e.a, nxt.op, nxt.b, OPS[nxt.op](e.a, nxt.b))
        candidate = _replace_equation(gold[index + 1], nxt, skipped, index + 1 == len(gold) - 1)
    elif kind == "premature_answer":
        if is_last:
            return None
        candidate = f"{step} The answer is \\boxed{{{e.c}}}."
    else:
        raise ValueError(f"unknown error kind {kind!r}; expected one of {ERROR_KINDS}")
    if candidate is None or label_step(problem, gold[:index], candidate).correct:
        return None
    return candidate


def _replace_equation(step: str, old: Equation, new: Equation, is_last: bool) -> str:
    out = step.replace(old.text(), new.text())
    if is_last:  # the boxed answer follows the (wrong) computation, as a model's would
        out = out.replace(f"\\boxed{{{old.c}}}", f"\\boxed{{{new.c}}}")
    return out


def explain_label(wrong: str, label: StepLabel, wrong_label: str) -> str:
    """A judge explanation for a step the oracle called wrong, from its reason; evidence first, as `explain`."""
    eqs = parse_equations(wrong)
    if label.reason.startswith("arithmetic") and eqs:
        bad = next(e for e in eqs if not _eq_is_right(e))
        if bad.op == "/":  # the right value may not be a whole number (or not exist)
            return f"{bad.a} / {bad.b} is not {bad.c}, so Step {wrong_label} is wrong."
        return f"{bad.a} {bad.op} {bad.b} is {OPS[bad.op](bad.a, bad.b)}, so Step {wrong_label} is wrong."
    reasons = {"uses a value not established": "uses a number that is not known yet",
               "computes a quantity the solution does not need": "computes something the problem does not ask for",
               "repeats an earlier result": "repeats an earlier step", "no computation": "computes nothing",
               "boxes the answer before deriving it": "gives an answer before the problem is finished"}  # fmt: skip
    what = next((v for k, v in reasons.items() if label.reason.startswith(k)), "gives the wrong answer")
    return f"Step {wrong_label} {what}, so it is wrong."


def explain(problem: Problem, prev_steps: list[str], wrong: str, kind: str, wrong_label: str) -> str:
    """A short judge explanation for an EFT item, naming what is wrong with the wrong step."""
    eqs = parse_equations(wrong)
    if kind == "arithmetic_slip" and eqs:
        # evidence first, verdict after: the judge recomputes, then compares (learnable by a small model)
        e = eqs[0]
        return f"{e.a} {e.op} {e.b} is {OPS[e.op](e.a, e.b)}, so Step {wrong_label} is wrong."
    if kind == "premature_answer":
        return f"Step {wrong_label} gives an answer before the problem is finished."
    if kind == "skipped_quantity":
        return f"Step {wrong_label} skips a quantity from the question."
    if eqs:
        return f"Step {wrong_label} computes {eqs[0].a} {eqs[0].op} {eqs[0].b}, which the problem does not ask for."
    return f"Step {wrong_label} does not follow from the problem."
