"""What a model's answer is, and what the reference answer is, following the Qwen2.5-Math evaluation conventions.

`extract_answer` picks the answer text of a response: the last `\\boxed{...}` (or `\\fbox{...}`), else what follows
"the answer is", else the last number in the text. `gold_answer` reads the reference answer of one benchmark row
(formats in shared/data/benchmarks/README.md) the way Qwen's `parse_ground_truth` does. Whether the two are
equal is grading.py's.
"""

from __future__ import annotations

import re

BENCHMARKS = ("gsm8k", "math", "math500", "gaokao2023en", "olympiadbench", "aime24", "amc23")
_GOLD_FIELD = {
    "gsm8k": "answer",
    "math": "answer",
    "math500": "answer",
    "gaokao2023en": "answer",
    "olympiadbench": "final_answer",
    "aime24": "answer",
    "amc23": "answer",
}

# ---------------------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------------------

# `(?![a-zA-Z])` so that a longer command name such as `\boxedsomething` is not taken for `\boxed`.
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def braced_group(text: str, start: int) -> str | None:
    """Content of the `{...}` group opening at text[start], or None if it never closes.

    Escaped braces (`\\{`, `\\}`) are literal characters in LaTeX, not grouping, so they are skipped; a backslash
    always consumes the next character, which also keeps `\\\\{` (line break, then a real brace) right.
    """
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` in `text` (nested braces handled).

    The brace-less form `\\boxed 5` yields the text up to the next `$` or line end. A trailing box that never
    closes (a truncated generation) is skipped in favour of the last complete one. None if there is no box.
    """
    for m in reversed(list(_BOX_RE.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            content = braced_group(text, i)
            if content is not None:
                return content
            continue
        if i > m.end():  # `\boxed 5`: needs the separating space, else `\boxed5` would be an unknown command
            rest = re.split(r"[$\n]", text[i:], maxsplit=1)[0].strip().rstrip(".").strip()
            if rest:
                return rest
    return None


# "the answer is" / "the final answer is", case-insensitive; the last occurrence wins.
_ANSWER_IS_RE = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\b", re.IGNORECASE)
# A sentence ends at a period followed by whitespace or the end; "3.5" has no whitespace after its period.
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
# Numbers: 1,234 thousands groups, decimals, negatives, .5, and fractions 3/4. The lookbehind stops a match from
# starting inside a word or another number ("x2", "3-5" -> "5" rather than "-5").
_NUMBER_RE = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
    r"|(?<![\w.])-?\.\d+"
)


def _clean_span(s: str) -> str:
    """Strip whitespace, a leading colon, `$` delimiters and a trailing period from an extracted span."""
    s = s.strip().lstrip(":").strip()
    s = s.strip("$").strip()
    s = s.rstrip(".").strip().strip("$").strip()
    return s


def extract_answer(text: str) -> str | None:
    """The model's final answer in `text`, or None.

    Priority (Qwen's order): last `\\boxed{}`; else the text after the last "the answer is" up to the end of that
    sentence or line; else the last number (commas dropped, so "1,234" -> "1234").
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        boxed = boxed.strip()
        return boxed or None
    matches = list(_ANSWER_IS_RE.finditer(text))
    if matches:
        # Leading whitespace and a colon may span lines ("The answer is:\n\n$$5$$"), so drop them first.
        rest = text[matches[-1].end() :].lstrip().lstrip(":").lstrip()
        line = rest.split("\n", 1)[0]
        end = _SENTENCE_END_RE.search(line)
        span = _clean_span(line[: end.start()] if end else line)
        if span:
            return span
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return re.sub(r"[,\s]", "", numbers[-1])
    return None


# ---------------------------------------------------------------------------------------------------------------
# Gold answers
# ---------------------------------------------------------------------------------------------------------------


def gold_answer(row: dict, benchmark: str) -> str:
    """The reference answer of one benchmark row, as Qwen2.5-Math's `parse_ground_truth` reads it.

    Raises ValueError for an unknown benchmark or a malformed field, KeyError for a missing field. The answer may
    be "" where the data has none (two gaokao2023en rows); `is_equiv` treats an empty gold as unmatchable.
    """
    if benchmark not in _GOLD_FIELD:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    field = _GOLD_FIELD[benchmark]
    if field not in row:
        raise KeyError(f"{benchmark} row has no {field!r} field (keys: {sorted(row)})")
    value = row[field]

    if benchmark == "gsm8k":
        if not isinstance(value, str) or "####" not in value:
            raise ValueError(f"gsm8k {field!r} field has no '####' final-answer marker: {str(value)[-80:]!r}")
        return value.split("####")[-1].strip().replace(",", "")
    if benchmark == "olympiadbench":
        if not isinstance(value, list) or not value:
            raise ValueError(f"olympiadbench {field!r} field must be a non-empty list, got {value!r}")
        return str(value[0]).strip().strip("$").strip()
    if benchmark == "amc23":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(int(value)) if float(value).is_integer() else str(value)
        return str(value).strip()
    if benchmark == "gaokao2023en":
        # Qwen removes every `$` (math delimiters); `\$` would be a money sign, dropped with it.
        return re.sub(r"\\?\$", "", str(value)).strip()
    return str(value).strip()  # math, math500, aime24 (aime keeps "025"; numeric comparison reads it as 25)
