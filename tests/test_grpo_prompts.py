"""Prompt sources for GRPO: tasks and JSONL files, both templates, resumable streams, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import addition_corpus
from tinyseek.chat_template import ASSISTANT, BOS, R1_ZERO_TEMPLATE
from tinyseek.rl.prompts import PromptSource, parse_tasks
from tinyseek.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(addition_corpus(), vocab_size=160, full_byte_alphabet=False)


def gsm8k_file(path: Path, n: int = 30) -> Path:
    lines = [json.dumps({"question": f"Tom has {i} apples and buys 3. How many?", "answer": f"{i}+3 #### {i + 3}"})
             for i in range(n)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_templates_render_the_question(tokenizer: Tokenizer) -> None:
    (task,) = parse_tasks("addition")
    zero = PromptSource([task], tokenizer, "r1zero").take(1)[0]
    assert zero.text.startswith(R1_ZERO_TEMPLATE.split("{prompt}")[0]) and zero.question in zero.text
    assert zero.token_ids[0] == tokenizer.bos_token_id
    chat = PromptSource([task], tokenizer, "chat").take(1)[0]
    assert chat.text.startswith(BOS) and chat.text.endswith(f"{ASSISTANT}<think>\n")
    assert chat.token_ids.count(tokenizer.bos_token_id) == 1
    assert PromptSource([task], tokenizer, "chat").style == "think"


def test_round_robin_and_resume(tokenizer: Tokenizer) -> None:
    source = PromptSource(parse_tasks("addition,subtraction"), tokenizer, "chat", seed=3)
    items = source.take(6)
    assert [i.task.name for i in items] == ["addition", "subtraction"] * 3
    replay = PromptSource(parse_tasks("addition,subtraction"), tokenizer, "chat", seed=3)
    replay.skip_to(4)
    assert [i.problem for i in replay.take(2)] == [i.problem for i in items[4:]]


def test_jsonl_files_split_by_hash_or_whole(tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = gsm8k_file(tmp_path / "train.jsonl")
    (whole,) = parse_tasks(f"gsm8k:{path}", "train")
    assert len(whole.problems_in("train")) == 30 and not whole.problems_in("test")
    (hashed,) = parse_tasks(f"gsm8k:{path}")
    assert 0 < len(hashed.problems_in("train")) < 30
    item = PromptSource([whole], tokenizer, "r1zero").take(1)[0]
    assert item.problem.answer == str(int(item.question.split()[2]) + 3)


def test_bad_input_is_named(tokenizer: Tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nonsense"):
        parse_tasks("addition,nonsense")
    with pytest.raises(ValueError, match="template 'plain'"):
        PromptSource(parse_tasks("addition"), tokenizer, "plain")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        parse_tasks(f"gsm8k:{tmp_path / 'missing.jsonl'}")
    with pytest.raises(ValueError, match="exceeds the 5"):
        PromptSource(parse_tasks("addition"), tokenizer, "r1zero", max_prompt_tokens=5).take(1)
