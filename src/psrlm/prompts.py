"""Prompt templates: solve (paper Fig. 4), judge (Fig. 5), segment (Fig. 3) and the SRLM scorer (Yuan et al.).

The "paper" variant follows the paper's wording (the figures are reproduced from the paper's description; the
judge follows the MT-Bench pairwise format the paper adapts, with the `[[A]]`/`[[B]]` verdict). The "compact"
variant says the same in a few tokens, for the tiny CPU model whose cost is dominated by judge-prompt length.
A recipe picks one with `prompts.variant`; nothing else in the package spells out a template.
"""

from __future__ import annotations

from dataclasses import dataclass

from psrlm.steps import continuation_prefix, render_steps

SOLVE_PAPER = (
    'Please solve the following math problem step by step. Start each step with "Step n: " (n = 1, 2, ...), '
    "write one reasoning step per line, and put the final answer in \\boxed{{}} in the last step.\n\n"
    "Problem: {question}\n\nSolution:\n"
)
SOLVE_COMPACT = "Q: {question}\nA:\n"

JUDGE_PAPER = (
    "Please act as an impartial judge and evaluate two candidate next steps for the math problem below. You are "
    "given the problem and the previous steps of a solution. Decide which candidate step, Step A or Step B, is "
    "better as the next step: it should be mathematically correct, follow from the previous steps, and make "
    "progress towards the correct answer. Avoid any position bias: the order in which the steps are presented "
    "must not influence your decision. First explain your reasoning briefly, then output your final verdict by "
    'strictly following this format: "[[A]]" if Step A is better, "[[B]]" if Step B is better.\n\n'
    "[Problem]\n{question}\n\n[Previous Steps]\n{previous}\n\n[Step A]\n{step_a}\n\n[Step B]\n{step_b}\n\n"
    "[Your Judgment]\n"
)
JUDGE_COMPACT = "Judge. Q: {question}\n{previous}\nA: {step_a}\nB: {step_b}\nBetter:"

SEGMENT_PAPER = (
    "Below is a math problem and a solution to it. Split the solution into reasoning steps. Do not change the "
    "content of the solution in any way: do not add, remove or rephrase any words, symbols or numbers; only "
    'decide where each step begins. Start each step with "Step n: " (n = 1, 2, ...) on a new line, and keep '
    "the final answer in \\boxed{{}}.\n\n"
    "[Problem]\n{question}\n\n[Solution]\n{solution}\n\n[Steps]\n"
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
SRLM_SCORE_COMPACT = "Score 1-5. Q: {question}\n{response}\nScore:"


@dataclass(frozen=True)
class Prompts:
    solve: str
    judge: str
    segment: str
    score: str

    def solve_prompt(self, question: str) -> str:
        return self.solve.format(question=question)

    def step_prompt(self, question: str, prev_steps: list[str]) -> str:
        """Prompt for generating the next step: solve prompt + previous steps + "Step l:"."""
        return self.solve_prompt(question) + continuation_prefix(prev_steps)

    def judge_prompt(self, question: str, prev_steps: list[str], step_a: str, step_b: str) -> str:
        previous = render_steps(prev_steps) if prev_steps else "(none)"
        return self.judge.format(question=question, previous=previous, step_a=step_a, step_b=step_b)

    def segment_prompt(self, question: str, solution: str) -> str:
        return self.segment.format(question=question, solution=solution)

    def score_prompt(self, question: str, response: str) -> str:
        return self.score.format(question=question, response=response)


VARIANTS = {
    "paper": Prompts(SOLVE_PAPER, JUDGE_PAPER, SEGMENT_PAPER, SRLM_SCORE),
    "compact": Prompts(SOLVE_COMPACT, JUDGE_COMPACT, SEGMENT_PAPER, SRLM_SCORE_COMPACT),
}


def get_prompts(variant: str) -> Prompts:
    if variant not in VARIANTS:
        raise ValueError(f"unknown prompts.variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]


def score_target(explanation: str, score: int) -> str:
    """The SRLM scorer's training completion: a short justification, then "Score: X"."""
    return f" {explanation} Score: {score}"


def judge_target_tag(verdict: str) -> str:
    return f" [[{verdict}]]"


def judge_target(explanation: str, verdict: str) -> str:
    """The judge's training completion: a short explanation, then the verdict tag."""
    return f" {explanation}{judge_target_tag(verdict)}"
