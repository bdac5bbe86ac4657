"""The only place that knows the "Step n: " format.

A solution is `Step 1: ...\\nStep 2: ...` and its last step holds the answer in `\\boxed{}` (paper §3.1). Models
write this imperfectly: text before "Step 1:", numbers skipped or repeated, steps run together on one line,
stray whitespace. `split_steps` is tolerant of all of that and never uses the numbers it reads — the position
of a step is its number — so a sloppy model's output still splits into the steps it meant.
"""

from __future__ import annotations

import re

# "Step 3:" at the start of the text, of a line, or after whitespace; number optional ("Step:"), any case.
_MARKER = re.compile(r"(?:(?<=\s)|^)step\s*\d*\s*[:.]\s?", re.IGNORECASE)
# The next-step marker a candidate generation stops at, so that one candidate is exactly one step.
STEP_STOP = "\nStep "


def step_prefix(n: int) -> str:
    """The marker that opens step `n` (1-based)."""
    return f"Step {n}:"


def split_steps(text: str) -> list[str]:
    """Split a response into step bodies (marker removed, whitespace trimmed, empty steps dropped).

    Text before the first marker is kept as a step of its own only when there is no marker at all (a model that
    ignored the format still produced one step); otherwise it is preamble ("Let's solve this.") and dropped.
    """
    text = text.replace("\r\n", "\n")
    starts = [m for m in _MARKER.finditer(text) if _real_marker(text, m)]
    if not starts:
        body = _clean(text)
        return [body] if body else []
    steps = []
    for m, nxt in zip(starts, starts[1:] + [None], strict=True):
        body = _clean(text[m.end() : nxt.start() if nxt else len(text)])
        if body:
            steps.append(body)
    return steps


def _real_marker(text: str, m: re.Match) -> bool:
    # "step:" inside a sentence ("in the next step: ...") is prose, not a marker: a marker starts a line or
    # carries a number.
    return m.start() == 0 or text[m.start() - 1] == "\n" or any(c.isdigit() for c in m.group(0))


def _clean(body: str) -> str:
    return "\n".join(line.rstrip() for line in body.strip().splitlines()).strip()


def render_steps(steps: list[str], start: int = 1) -> str:
    """`["a", "b"]` -> "Step 1: a\\nStep 2: b"."""
    return "\n".join(f"{step_prefix(i)} {s}" for i, s in enumerate(steps, start=start))


def continuation_prefix(prev_steps: list[str]) -> str:
    """Text after the solve prompt for generating step l = len(prev_steps) + 1.

    It ends exactly on "Step l:" so the candidate is the step body; the prompt ends on a token boundary because
    ':' and the ' word' that follows are always separate pre-tokens.
    """
    done = render_steps(prev_steps)
    return (done + "\n" if done else "") + step_prefix(len(prev_steps) + 1)


def clean_candidate(completion: str) -> str:
    """A generated step body: cut at the next step marker (stop strings keep the stop text), trim."""
    cut = completion.find(STEP_STOP)
    if cut >= 0:
        completion = completion[:cut]
    return _clean(completion)


def find_boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` in order, with nested braces balanced."""
    out = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1].strip())
    return out


def is_final(step: str) -> bool:
    """A step is final when it states the answer in a complete `\\boxed{}`."""
    return bool(find_boxed(step))


def final_answer(steps: list[str]) -> str | None:
    """The boxed answer of the last step that has one."""
    for s in reversed(steps):
        boxes = find_boxed(s)
        if boxes:
            return boxes[-1]
    return None
