"""The paper variant is the paper's Figures 3-5 word for word (shared/paper/prompts.md), and what the code adds
around the templates is exactly what prompts.py documents."""

import re
from pathlib import Path

import pytest

from psrlm.prompts import FIG3_SEGMENT, FIG4_SOLVE, FIG5_JUDGE, VARIANTS, get_prompts

PROMPTS_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "prompts.md"


def _figures() -> dict[str, str]:
    if not PROMPTS_MD.exists():
        pytest.skip(f"{PROMPTS_MD} not found (the shared folder sits beside the repository)")
    text = PROMPTS_MD.read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"^## Figure (\d)[^\n]*\n\n```\n(.*?)\n```", text, re.MULTILINE | re.DOTALL):
        out[m.group(1)] = m.group(2)
    assert set(out) == {"3", "4", "5"}
    return out


@pytest.mark.parametrize("figure,template", [("3", FIG3_SEGMENT), ("4", FIG4_SOLVE), ("5", FIG5_JUDGE)])
def test_paper_templates_are_verbatim(figure, template):
    assert template == _figures()[figure]


def test_paper_variant_uses_them_and_adds_only_what_is_documented():
    p = get_prompts("paper")
    q, prev = "What is $1+1$? Use {braces}.", ["Compute $1+1$.", "It is 2."]
    assert p.solve_prompt(q) == FIG4_SOLVE.replace("{problem}", q) + "\n\n"
    assert p.step_prompt(q, prev) == p.solve_prompt(q) + "Step 1: Compute $1+1$.\nStep 2: It is 2.\nStep 3:"
    judged = p.judge_prompt(q, prev, "So \\boxed{2}.", "So \\boxed{3}.")
    context = q + "\n\nStep 1: Compute $1+1$.\nStep 2: It is 2."
    expected = (FIG5_JUDGE.replace("{Question and Partial Reasoning Steps}", context)
                .replace("{Step A}", "So \\boxed{2}.").replace("{Step B}", "So \\boxed{3}.")) + "\n\n"  # fmt: skip
    assert judged == expected
    assert p.judge_prompt(q, [], "a", "b").count(q + "\n\n[The Start of Assistant A") == 1  # no previous steps
    assert (
        p.segment_prompt(q, "1+1=2") == FIG3_SEGMENT.replace("{question}", q).replace("{solution}", "1+1=2") + "\n\n"
    )


def test_srlm_prompt_cites_its_source():
    source = Path(__file__).resolve().parents[1] / "src" / "psrlm" / "prompts.py"
    assert "Yuan et al. (2024)" in source.read_text()
    assert "additive 5-point scoring system" in VARIANTS["paper"].score


def test_every_variant_fills_every_slot():
    for name, p in VARIANTS.items():
        texts = [p.solve_prompt("Q?"), p.step_prompt("Q?", ["a"]), p.judge_prompt("Q?", ["a"], "b", "c"),
                 p.segment_prompt("Q?", "S"), p.score_prompt("Q?", "R")]  # fmt: skip
        for t in texts:
            assert not re.search(r"\{(problem|question|solution|previous|response|Step A|Step B|Question and)", t), (
                name
            )


@pytest.mark.parametrize("verdict_first", [False, True])
def test_eft_completion_order_and_where_the_soft_verdict_reads_it(verdict_first):
    from psrlm.judge import parse_verdict
    from psrlm.prompts import judge_target_tag
    from psrlm.records import JudgeExample
    from psrlm.train import eft_rows

    p = get_prompts("compact", verdict_first)
    e = JudgeExample("Q?", ["a"], "3 + 9 = 2.", "3 + 9 = 12.", "3 + 9 is 12, so Step A is wrong.", "B", {})
    (row,) = eft_rows([e], p)
    assert row["prompt"] == p.judge_prompt("Q?", ["a"], "3 + 9 = 2.", "3 + 9 = 12.")
    assert parse_verdict(row["completion"]) == "B"  # generated verdicts read the last tag in either order
    # soft / logits verdicts compare log p(judge_target_tag) right after the prompt: only verdict_first trains it there
    assert row["completion"].startswith(judge_target_tag("B")) is verdict_first
    assert row["completion"] == (" [[B]] 3 + 9 is 12, so Step A is wrong." if verdict_first
                                 else " 3 + 9 is 12, so Step A is wrong. [[B]]")  # fmt: skip


def test_prompts_of_a_config_and_the_paper_order_by_default():
    from psrlm.configs import load_config
    from psrlm.prompts import prompts_of

    assert prompts_of(load_config(None, [])).verdict_first is False
    cfg = load_config(None, ["prompts.variant=compact", "prompts.verdict_first=true"])
    assert prompts_of(cfg) == get_prompts("compact", True) and prompts_of(cfg).verdict_first
