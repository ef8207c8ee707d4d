"""The chat template against DeepSeek-R1's format, written out by hand.

tests/test_chat_template.py shows that our renderer and transformers agree on our template; that cannot
catch the template itself drifting from DeepSeek's. Here each expected string is typed out from R1's
format: BOS, the system messages joined by blank lines, `<｜User｜>{content}`, `<｜Assistant｜>{content}
<｜end▁of▁sentence｜>` where history keeps only the text after the last `</think>`, and the generation
prompt `<｜Assistant｜><think>\\n`. A last test shows the table fails on templates that drift.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyseek.chat_template import R1_CHAT_TEMPLATE, render_chat
from tinyseek.tokenizer import Tokenizer

U, A, S = "user", "assistant", "system"


def m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# (id, conversation, add_generation_prompt, the exact text R1's template gives)
EXPECTED = [
    (
        "one-question",
        [m(U, "What is 2+2?")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n",
    ),
    (
        "no-generation-prompt",
        [m(U, "What is 2+2?")],
        False,
        "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?",
    ),
    (
        "system-prompt",
        [m(S, "You are terse."), m(U, "Hi")],
        True,
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜><think>\n",
    ),
    (
        "two-system-prompts",
        [m(S, "Rule one."), m(S, "Rule two."), m(U, "Go")],
        True,
        "<｜begin▁of▁sentence｜>Rule one.\n\nRule two.<｜User｜>Go<｜Assistant｜><think>\n",
    ),
    (
        "late-system-prompt-moves-to-the-front",
        [m(U, "first"), m(S, "late system message"), m(U, "second")],
        True,
        "<｜begin▁of▁sentence｜>late system message<｜User｜>first<｜User｜>second<｜Assistant｜><think>\n",
    ),
    (
        "reasoning-stripped-from-history",
        [m(U, "Q1"), m(A, "<think>\nlet me think\n</think>\n\nA1"), m(U, "Q2")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>Q1<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜><think>\n",
    ),
    (
        "only-text-after-the-last-think-close",
        [m(U, "Q1"), m(A, "<think>a</think>mid</think>final"), m(U, "Q2")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>Q1<｜Assistant｜>final<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜><think>\n",
    ),
    (
        "history-without-reasoning-kept-whole",
        [m(U, "Q1"), m(A, "no reasoning here"), m(U, "Q2"), m(A, "<think>x</think>A2"), m(U, "Q3")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>Q1<｜Assistant｜>no reasoning here<｜end▁of▁sentence｜>"
        "<｜User｜>Q2<｜Assistant｜>A2<｜end▁of▁sentence｜><｜User｜>Q3<｜Assistant｜><think>\n",
    ),
    (
        "ends-with-the-assistant",
        [m(U, "ends with the assistant"), m(A, "<think>r</think>done")],
        False,
        "<｜begin▁of▁sentence｜><｜User｜>ends with the assistant<｜Assistant｜>done<｜end▁of▁sentence｜>",
    ),
    (
        "empty-reasoning-and-blank-answer",
        [m(S, "sys"), m(U, "multi\nline\n\nquestion"), m(A, "<think>\n\n</think>\n\n"), m(U, "again")],
        True,
        "<｜begin▁of▁sentence｜>sys<｜User｜>multi\nline\n\nquestion<｜Assistant｜>\n\n<｜end▁of▁sentence｜>"
        "<｜User｜>again<｜Assistant｜><think>\n",
    ),
    (
        "chinese",
        [m(U, "你好，358 + 467 等于多少？")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>你好，358 + 467 等于多少？<｜Assistant｜><think>\n",
    ),
    (
        "french-multi-turn",
        [m(U, "Combien font 12 × 3 ?"), m(A, "<think>12×3=36</think>36"), m(U, "Et 5 × 5 ?")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜>Combien font 12 × 3 ?<｜Assistant｜>36<｜end▁of▁sentence｜>"
        "<｜User｜>Et 5 × 5 ?<｜Assistant｜><think>\n",
    ),
    (
        "empty-user-message",
        [m(U, "")],
        True,
        "<｜begin▁of▁sentence｜><｜User｜><｜Assistant｜><think>\n",
    ),
]
IDS = [case[0] for case in EXPECTED]


@pytest.mark.parametrize(("name", "conversation", "generation_prompt", "expected"), EXPECTED, ids=IDS)
def test_render_matches_r1_by_hand(
    name: str, conversation: list, generation_prompt: bool, expected: str
) -> None:
    assert render_chat(conversation, add_generation_prompt=generation_prompt) == expected


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer saved in the HF layout: its tokenizer_config.json carries the template clients use."""
    directory = tmp_path_factory.mktemp("tok")
    corpus = [c["content"] for _, conv, _, _ in EXPECTED for c in conv] * 10
    Tokenizer.train(corpus, vocab_size=400).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(("name", "conversation", "generation_prompt", "expected"), EXPECTED, ids=IDS)
def test_saved_tokenizer_and_transformers_match_r1_by_hand(
    tokenizer_dir: Path, name: str, conversation: list, generation_prompt: bool, expected: str
) -> None:
    ours = Tokenizer.from_pretrained(tokenizer_dir)
    assert ours.apply_chat_template(conversation, add_generation_prompt=generation_prompt) == expected
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    text = theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
    assert text == expected


DRIFTS = {
    "reasoning-kept-in-history": ("message['content'].split('</think>')[-1]", "message['content']"),
    "generation-prompt-without-think": ("'<｜Assistant｜><think>\\n'", "'<｜Assistant｜>'"),
    "systems-joined-by-one-newline": ("'\\n\\n'", "'\\n'"),
    "no-bos": ("bos_token + ns.system", "ns.system"),
    "no-end-of-sentence-after-answers": ("+ '<｜end▁of▁sentence｜>'", ""),
    "answer-stripped": ("split('</think>')[-1]", "split('</think>')[-1].strip()"),
}


@pytest.mark.parametrize("drift", DRIFTS, ids=list(DRIFTS))
def test_the_table_catches_a_drifted_template(drift: str) -> None:
    old, new = DRIFTS[drift]
    assert old in R1_CHAT_TEMPLATE, f"the drift {drift!r} no longer applies to the template"
    drifted = R1_CHAT_TEMPLATE.replace(old, new)
    caught = [
        name
        for name, conversation, generation_prompt, expected in EXPECTED
        if render_chat(conversation, add_generation_prompt=generation_prompt, template=drifted) != expected
    ]
    assert caught, f"no expected string notices the drift {drift!r}"
