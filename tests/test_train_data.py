"""Trainer data: document formats, packing and its loss mask, resume position, bad-data errors."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.train_fixtures import write_tokenizer
from tinyseek.chat_template import ASSISTANT, r1_zero_prompt
from tinyseek.tokenizer import Tokenizer
from tinyseek.train.documents import Document, TaskSpec, read_jsonl_documents, task_documents
from tinyseek.train.packing import Packer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer.from_pretrained(write_tokenizer(tmp_path_factory.mktemp("tok")))


def test_task_formats_render_the_templates() -> None:
    from tinyseek.tasks import get_task

    task = get_task("addition")
    problem = next(task.sample(seed=0))
    r1zero = next(task_documents(TaskSpec(("addition",), "r1zero"), seed=0))
    assert r1zero.prompt == r1_zero_prompt(task.prompt(problem, "en"))
    assert r1zero.completion.startswith(" <think>\n") and r1zero.completion.endswith("</answer>")
    chat = next(task_documents(TaskSpec(("addition",), "chat"), seed=0))
    assert chat.prompt.endswith(f"{ASSISTANT}<think>\n") and "</think>\n<answer>" in chat.completion
    plain = next(task_documents(TaskSpec(("addition",), "plain"), seed=0))
    assert plain.prompt == task.prompt(problem, "en") + "\n"
    mixed = list(
        itertools.islice(task_documents(TaskSpec(("addition", "countdown"), langs=("en", "fr")), 0), 4)
    )
    assert [d.source.split()[1] for d in mixed] == ["addition", "addition", "countdown", "countdown"]


def test_r1zero_preamble_share_drops_only_the_preamble() -> None:
    """A share < 1 keeps the preamble on about that share of documents; the traces stay the same."""
    from tinyseek.chat_template import R1_ZERO_TEMPLATE

    preamble = R1_ZERO_TEMPLATE[: R1_ZERO_TEMPLATE.index("User: ")]
    full = list(itertools.islice(task_documents(TaskSpec(("addition",), "r1zero"), seed=3), 400))
    spec = TaskSpec(("addition",), "r1zero", preamble_share=0.25)
    mixed = list(itertools.islice(task_documents(spec, seed=3), 400))
    with_preamble = [d.prompt.startswith(preamble) for d in mixed]
    assert 0.18 < sum(with_preamble) / len(mixed) < 0.32
    for a, b, kept in zip(full, mixed, with_preamble, strict=True):
        assert a.completion == b.completion
        assert b.prompt == (a.prompt if kept else a.prompt.removeprefix(preamble))
        assert b.prompt.startswith("User: ") or kept
    with pytest.raises(ValueError, match="preamble_share = 1.5"):
        TaskSpec(("addition",), preamble_share=1.5)


def test_pretrain_rows_are_contiguous_and_fully_trained(tokenizer: Tokenizer) -> None:
    docs = [Document("", f"document number {i}", f"d{i}") for i in range(50)]
    packer = Packer(lambda: iter(docs), tokenizer, seq_len=15, sft=False, pad_id=2)
    tokens, mask = packer.next_rows(3)
    stream = []
    for d in docs[: packer.consumed]:
        stream += [tokenizer.bos_token_id] + tokenizer.encode(d.completion, add_special_tokens=False)
        stream.append(tokenizer.eos_token_id)
    assert tokens.flatten().tolist() == stream[:48]
    assert bool(mask.all())


def test_sft_mask_covers_completions_only_and_never_splits(tokenizer: Tokenizer) -> None:
    docs = [Document("question 12+3=", f"answer {i}", f"d{i}") for i in range(40)]
    packer = Packer(lambda: iter(docs), tokenizer, seq_len=40, sft=True, pad_id=2)
    tokens, mask = packer.next_rows(4)
    prompt_len = 1 + len(tokenizer.encode("question 12+3=", add_special_tokens=False))
    for row, row_mask in zip(tokens.tolist(), mask.tolist(), strict=True):
        starts = [i for i, t in enumerate(row) if t == tokenizer.bos_token_id]
        assert starts[0] == 0  # every row starts with a whole document
        for s in starts:
            assert not any(row_mask[s : s + prompt_len])
            assert row_mask[s + prompt_len]
        last_eos = max(i for i, t in enumerate(row) if t == tokenizer.eos_token_id)
        assert not any(row_mask[last_eos + 1 :])  # padding is not trained on
        assert all(t == 2 for t in row[last_eos + 1 :])


def test_packer_resumes_at_the_same_position(tokenizer: Tokenizer) -> None:
    def make() -> Packer:
        return Packer(
            lambda: task_documents(TaskSpec(("addition",), "plain"), seed=1), tokenizer, 120, True, 2
        )

    reference = make()
    reference.next_rows(5)
    state = json.loads(json.dumps(reference.state_dict()))
    expected = reference.next_rows(3)
    resumed = make()
    resumed.load_state_dict(state)
    got = resumed.next_rows(3)
    assert got[0].equal(expected[0]) and got[1].equal(expected[1])


def test_bad_data_names_file_and_line(tmp_path, tokenizer: Tokenizer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.jsonl: no records"):
        read_jsonl_documents(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": "cut\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: invalid JSON"):
        read_jsonl_documents(broken)
    shape = tmp_path / "shape.jsonl"
    shape.write_text('{"text": "fine"}\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"shape\.jsonl:2: expected .*found keys \['question'\]"):
        read_jsonl_documents(shape)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_jsonl_documents(tmp_path / "missing.jsonl")
    long = tmp_path / "long.jsonl"
    long.write_text(
        json.dumps({"prompt": "q", "completion": "ok"})
        + "\n"
        + json.dumps({"prompt": "q", "completion": "9" * 80})
        + "\n"
    )
    docs = read_jsonl_documents(long)
    packer = Packer(lambda: iter(docs * 10), tokenizer, seq_len=32, sft=True, pad_id=2)
    with pytest.raises(ValueError, match=r"long\.jsonl:2: \d+ tokens do not fit the context of 32"):
        packer.next_rows(2)


def test_messages_records_train_the_last_assistant_turn(tmp_path) -> None:
    file = tmp_path / "chat.jsonl"
    record = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nadd\n</think>\n4"},
        ]
    }
    file.write_text(json.dumps(record) + "\n")
    (doc,) = read_jsonl_documents(file)
    assert doc.prompt.endswith(f"2+2?{ASSISTANT}<think>\n")
    assert doc.completion == "add\n</think>\n4"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: the last message must be the assistant's"):
        read_jsonl_documents(bad)
