"""The R1 chat template: our rendering equals transformers' apply_chat_template, string and ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyseek.chat_template import ChatTemplateError, r1_zero_completion, r1_zero_prompt, render_chat
from tinyseek.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

U, A, S = "user", "assistant", "system"


def m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


CONVERSATIONS = [
    [m(U, "What is 2+2?")],
    [m(S, "You are terse."), m(U, "Hi")],
    [m(S, "Rule one."), m(S, "Rule two."), m(U, "Go")],
    [m(U, "Q1"), m(A, "<think>\nlet me think\n</think>\n\nA1"), m(U, "Q2")],
    [m(U, "Q1"), m(A, "<think>a</think>mid</think>final"), m(U, "Q2")],
    [m(U, "Q1"), m(A, "no reasoning here"), m(U, "Q2"), m(A, "<think>x</think>A2"), m(U, "Q3")],
    [m(U, "Bonjour, combien font 12 × 3 ?"), m(A, "<think>12×3=36</think>36"), m(U, "Et 5 × 5 ?")],
    [m(U, "你好，358 + 467 等于多少？")],
    [m(U, "")],
    [m(U, "first"), m(S, "late system message"), m(U, "second")],
    [m(S, "sys"), m(U, "multi\nline\n\nquestion"), m(A, "<think>\n\n</think>\n\n"), m(U, "again")],
    [m(U, "ends with the assistant"), m(A, "<think>r</think>done")],
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tok")
    corpus = [c["content"] for conv in CONVERSATIONS for c in conv] * 10
    Tokenizer.train(corpus, vocab_size=400).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_matches_transformers_strings_and_ids(tokenizer_dir: Path, generation_prompt: bool) -> None:
    ours = Tokenizer.from_pretrained(tokenizer_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    for conversation in CONVERSATIONS:
        text = ours.apply_chat_template(conversation, add_generation_prompt=generation_prompt)
        expected = theirs.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=generation_prompt
        )
        assert text == expected
        ids = ours.apply_chat_template(conversation, add_generation_prompt=generation_prompt, tokenize=True)
        expected_ids = theirs.apply_chat_template(
            conversation, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
        )["input_ids"]
        assert ids == list(expected_ids)
        assert ids.count(ours.bos_token_id) == 1


def test_r1_layout() -> None:
    text = render_chat(
        [m(S, "A"), m(U, "Q1"), m(S, "B"), m(A, "<think>secret</think>\n\nA1"), m(U, "Q2")],
        add_generation_prompt=True,
    )
    assert text == (
        "<｜begin▁of▁sentence｜>A\n\nB<｜User｜>Q1<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜>"
        "<｜User｜>Q2<｜Assistant｜><think>\n"
    )
    assert "secret" not in text


def test_bad_messages_raise() -> None:
    with pytest.raises(ChatTemplateError, match="unknown role tool"):
        render_chat([m("tool", "x")])
    with pytest.raises(ChatTemplateError, match="'role' and 'content'"):
        render_chat([{"content": "x"}])
    with pytest.raises(ChatTemplateError, match="must be a string"):
        render_chat([{"role": "user", "content": ["x"]}])


def test_r1_zero_template() -> None:
    prompt = r1_zero_prompt("What is 1+1?")
    assert prompt.startswith("A conversation between User and Assistant.")
    assert prompt.endswith("User: What is 1+1?. Assistant:")
    assert "<think> </think> and <answer> </answer>" in prompt
    assert r1_zero_completion("1+1=2", "2") == " <think>\n1+1=2\n</think>\n<answer>2</answer>"


def test_r1_zero_chat_template_renders_the_r1_zero_format():
    from tinyseek.chat_template import BOS, R1_ZERO_CHAT_TEMPLATE

    def chat(messages, **kw):
        return render_chat(messages, template=R1_ZERO_CHAT_TEMPLATE, **kw)

    one = [{"role": "user", "content": "What is 1 + 2?"}]
    assert chat(one) == BOS + r1_zero_prompt("What is 1 + 2?") + " <think>\n"
    assert chat(one, add_generation_prompt=False) == BOS + r1_zero_prompt("What is 1 + 2?")
    turns = [*one, {"role": "assistant", "content": " <think>\n1+2=3\n</think>\n<answer>3</answer>"}]
    text = chat([*turns, {"role": "user", "content": "And 2 + 2?"}])
    assert text.endswith(". Assistant: <answer>3</answer> User: And 2 + 2?. Assistant: <think>\n")
    assert "1+2=3" not in text  # earlier reasoning is not fed back
    with pytest.raises(ChatTemplateError, match="no system role"):
        chat([{"role": "system", "content": "be brief"}, *one])
