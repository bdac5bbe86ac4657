"""Prompt templates: solve (paper Fig. 4), judge (Fig. 5), segment (Fig. 3) and the SRLM scorer (Yuan et al.).

Variants (`prompts.variant`):
  paper       Figures 3, 4 and 5 of Zhang et al. (2025), arXiv 2503.03746, Appendix C, verbatim (transcribed in
              shared/paper/prompts.md; tests/test_prompts.py compares them word for word). configs/paper-*.yaml.
  structured  this project's earlier paper-like wording (an instruction plus bracketed sections), kept for runs
              made with it.
  compact     the same content in a few tokens, for the tiny CPU model whose cost is dominated by judge-prompt
              length. configs/demo.yaml and configs/initdata-arith.yaml.
The SRLM scoring prompt is Yuan et al. (2024), "Self-Rewarding Language Models", Figure 2 (the additive 5-point
LLM-as-a-Judge prompt), in every variant but compact.

What the code adds around a template (the paper prints only the templates, so these are this project's choices):
  - slots are filled as they stand: {problem} / {question} / {solution} with the text, {Step A} / {Step B} with
    the step bodies;
  - {Question and Partial Reasoning Steps} (Fig. 5) is the question, then, if there are previous steps, a blank
    line and the steps rendered "Step 1: ...\\nStep 2: ...";
  - after each paper template comes a blank line ("\\n\\n"), where the model's answer begins; a step being
    generated is then opened with "Step l:" (steps.continuation_prefix), so the model writes the step's body.
Nothing else in the package spells out a template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from psrlm.steps import continuation_prefix, render_steps

# --------------------------------------------------------------------------------- the paper, verbatim

# Figure 3: converting a solution into steps (IFT segmentation, sent to the teacher).
FIG3_SEGMENT = (
    "There is a math problem and its corresponding solution. Please divide the given solution into individual steps "
    'logically. Use "Step n: " before each step to distinguish between different steps, where n is a positive '
    "integer starting from 1, representing the current step number. Only divide the steps without altering any "
    "information in the original solution. Please output only the divided solution steps in the format mentioned "
    "above, and do not include any additional information. Do not omit the final answer that is placed in boxed.\n"
    "\n"
    "[The Start of Question Provided]\n"
    "{question}\n"
    "[The End of Question Provided]\n"
    "\n"
    "[The Start of Solution Provided]\n"
    "{solution}\n"
    "[The End of Solution Provided]"
)

# Figure 4: step-by-step reasoning (the solve prompt). "in boxed" is as printed (no backslash).
FIG4_SOLVE = (
    'Let\'s think step by step and solve the following math problem. Use "Step n: " before each step to '
    "distinguish between different steps, where n is a positive integer starting from 1, representing the current "
    "step number. Put your final answer in boxed.\n"
    "\n"
    "Problem: {problem}"
)

# Figure 5: step-wise LLM-as-a-Judge, after the pattern of MT-Bench (Zheng et al., 2023).
FIG5_JUDGE = (
    "Please act as an impartial judge and evaluate the quality of two next reasoning steps provided by two AI "
    "assistants to the question and partial reasoning steps displayed below. Your evaluation should consider "
    "correctness and helpfulness. You will be given assistant A's answer, and assistant B's answer. Your job is to "
    "evaluate which assistant's answer is better. You should compare the two responses and provide a detailed "
    "explanation. Avoid any position biases and ensure that the order in which the responses were presented does "
    "not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not "
    "favor certain names of the assistants. Be as objective as possible. After providing your explanation, output "
    'your final verdict by strictly following this format: "[[A]]" if assistant A is better, and "[[B]]" if '
    "assistant B is better.\n"
    "\n"
    "[Question and Intermediate Reasoning Steps Provided]\n"
    "{Question and Partial Reasoning Steps}\n"
    "\n"
    "[The Start of Assistant A's Next Reasoning Step]\n"
    "{Step A}\n"
    "[The End of Assistant A's Next Reasoning Step]\n"
    "\n"
    "[The Start of Assistant B's Next Reasoning Step]\n"
    "{Step B}\n"
    "[The End of Assistant B's Next Reasoning Step]"
)

# Yuan et al. (2024), "Self-Rewarding Language Models", Figure 2: the additive 5-point LLM-as-a-Judge prompt.
SRLM_SCORE = (
    "Review the user's question and the corresponding response using the additive 5-point scoring system "
    "described below. Points are accumulated based on the satisfaction of each criterion:\n"
    "- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even "
    "if it is incomplete or contains some irrelevant content.\n"
    "- Add another point if the response addresses a substantial portion of the user's question, but does not "
    "completely resolve the query or provide a direct answer.\n"
    "- Award a third point if the response answers the basic elements of the user's question in a useful way, "
    "regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found "
    "in blogs or search results.\n"
    "- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the "
    "user's question directly and comprehensively, and is well-organized and helpful, even if there is slight room "
    "for improvement in clarity, conciseness or focus.\n"
    "- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, "
    "without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and "
    "insightful answer.\n\n"
    "User: {question}\n\n<response>{response}</response>\n\n"
    "After examining the user's instruction and the response:\n"
    "- Briefly justify your total score, up to 100 words.\n"
    '- Conclude with the score using the format: "Score: <total points>"\n\n'
    "Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate "
    "the response in alignment with this additive scoring model, we'll systematically attribute points based on "
    "the outlined criteria.\n"
)

ANSWER_START = "\n\n"  # the code's choice: the model's answer begins after a blank line below a paper template

# ------------------------------------------------------------------------- this project's own wordings

SOLVE_STRUCTURED = (
    'Please solve the following math problem step by step. Start each step with "Step n: " (n = 1, 2, ...), '
    "write one reasoning step per line, and put the final answer in \\boxed{} in the last step.\n\n"
    "Problem: {problem}\n\nSolution:\n"
)
JUDGE_STRUCTURED = (
    "Please act as an impartial judge and evaluate two candidate next steps for the math problem below. You are "
    "given the problem and the previous steps of a solution. Decide which candidate step, Step A or Step B, is "
    "better as the next step: it should be mathematically correct, follow from the previous steps, and make "
    "progress towards the correct answer. Avoid any position bias: the order in which the steps are presented "
    "must not influence your decision. First explain your reasoning briefly, then output your final verdict by "
    'strictly following this format: "[[A]]" if Step A is better, "[[B]]" if Step B is better.\n\n'
    "[Problem]\n{question}\n\n[Previous Steps]\n{previous}\n\n[Step A]\n{Step A}\n\n[Step B]\n{Step B}\n\n"
    "[Your Judgment]\n"
)
SEGMENT_STRUCTURED = (
    "Below is a math problem and a solution to it. Split the solution into reasoning steps. Do not change the "
    "content of the solution in any way: do not add, remove or rephrase any words, symbols or numbers; only "
    'decide where each step begins. Start each step with "Step n: " (n = 1, 2, ...) on a new line, and keep '
    "the final answer in \\boxed{}.\n\n"
    "[Problem]\n{question}\n\n[Solution]\n{solution}\n\n[Steps]\n"
)
SOLVE_COMPACT = "Q: {problem}\nA:\n"
JUDGE_COMPACT = "Judge. Q: {question}\n{previous}\nA: {Step A}\nB: {Step B}\nBetter:"
SRLM_SCORE_COMPACT = "Score 1-5. Q: {question}\n{response}\nScore:"


def fill(template: str, **slots: str) -> str:
    """Replace each `{name}` slot with its text (slot names may hold spaces, as Fig. 5's do); the filled texts are
    never re-read, so braces in a question or a step are safe."""
    for name, value in slots.items():
        template = template.replace("{" + name + "}", value)
    return template


@dataclass(frozen=True)
class Prompts:
    solve: str
    judge: str
    segment: str
    score: str
    answer_start: str = ""  # added after the solve / judge / segment templates (see the module docstring)
    # "merged": Fig. 5's one slot holds the question and the previous steps; "split": {question} and {previous}
    judge_context: str = "split"
    # the judge's training completion: explanation then verdict (paper), or the verdict first (prompts.verdict_first)
    verdict_first: bool = False

    def solve_prompt(self, question: str) -> str:
        return fill(self.solve, problem=question) + self.answer_start

    def step_prompt(self, question: str, prev_steps: list[str]) -> str:
        """Prompt for generating the next step: solve prompt + previous steps + "Step l:"."""
        return self.solve_prompt(question) + continuation_prefix(prev_steps)

    def judge_prompt(self, question: str, prev_steps: list[str], step_a: str, step_b: str) -> str:
        if self.judge_context == "merged":
            context = question + ("\n\n" + render_steps(prev_steps) if prev_steps else "")
            text = fill(self.judge, **{"Question and Partial Reasoning Steps": context, "Step A": step_a,
                                       "Step B": step_b})  # fmt: skip
        else:
            previous = render_steps(prev_steps) if prev_steps else "(none)"
            text = fill(self.judge, question=question, previous=previous, **{"Step A": step_a, "Step B": step_b})
        return text + self.answer_start

    def segment_prompt(self, question: str, solution: str) -> str:
        return fill(self.segment, question=question, solution=solution) + self.answer_start

    def score_prompt(self, question: str, response: str) -> str:
        return fill(self.score, question=question, response=response)

    def judge_completion(self, explanation: str, verdict: str) -> str:
        """What EFT trains the judge to write after a judge prompt."""
        return judge_target(explanation, verdict, self.verdict_first)


VARIANTS = {
    "paper": Prompts(
        FIG4_SOLVE, FIG5_JUDGE, FIG3_SEGMENT, SRLM_SCORE, answer_start=ANSWER_START, judge_context="merged"
    ),  # fmt: skip
    "structured": Prompts(SOLVE_STRUCTURED, JUDGE_STRUCTURED, SEGMENT_STRUCTURED, SRLM_SCORE),
    "compact": Prompts(SOLVE_COMPACT, JUDGE_COMPACT, SEGMENT_STRUCTURED, SRLM_SCORE_COMPACT),
}


def get_prompts(variant: str, verdict_first: bool = False) -> Prompts:
    if variant not in VARIANTS:
        raise ValueError(f"unknown prompts.variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return replace(VARIANTS[variant], verdict_first=verdict_first)


def prompts_of(cfg) -> Prompts:
    """A config's prompts (its `prompts` section)."""
    return get_prompts(cfg.prompts.variant, cfg.prompts.verdict_first)


def score_target(explanation: str, score: int) -> str:
    """The SRLM scorer's training completion: a short justification, then "Score: X"."""
    return f" {explanation} Score: {score}"


def judge_target_tag(verdict: str) -> str:
    return f" [[{verdict}]]"


def judge_target(explanation: str, verdict: str, verdict_first: bool = False) -> str:
    """The judge's training completion: a short explanation, then the verdict tag (the paper's order), or the tag
    first, where search.verdict soft / logits read it (right after the judge prompt). judge.parse_verdict reads the
    last tag either way; explanations hold none."""
    if verdict_first:
        return f"{judge_target_tag(verdict)} {explanation}"
    return f" {explanation}{judge_target_tag(verdict)}"
