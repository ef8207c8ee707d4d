"""Tokenizer files: trained here, loaded by transformers, same ids and text both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyseek.chat_template import BOS, EOS, THINK_CLOSE, THINK_OPEN
from tinyseek.tokenizer import SPECIAL_TOKENS, TOOL_TOKENS, UNK, Tokenizer

transformers = pytest.importorskip("transformers")

CORPUS = [
    "What is 358 + 467? 8+7=15, write 5, carry 1. <answer>825</answer>",
    "Combien font 12 × 34 ? Réponse : 408. Ça marche très bien.",
    "358 + 467 等于多少？8+7=15，写5，进1。",
    "The quick brown fox jumps over the lazy dog while 98765 - 4321 = 94444.",
] * 40

SAMPLES = [
    "Hello world, 12345 + 678 = 13023!",
    "  leading and trailing spaces  ",
    "Unicode: naïve café, 你好世界, ∑ x² → ∞",
    f"{THINK_OPEN}\nreasoning here\n{THINK_CLOSE}\n<answer>42</answer>",
    f"{BOS}already has specials{EOS}",
    "tabs\tand\nnewlines\n\n",
    "",
]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tok")
    Tokenizer.train(CORPUS, vocab_size=400).save_pretrained(directory)
    return directory


def test_special_tokens_are_single_tokens(trained_dir: Path) -> None:
    tok = Tokenizer.from_pretrained(trained_dir)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2)
    for token in (*SPECIAL_TOKENS, THINK_OPEN, THINK_CLOSE):
        assert tok.encode(token, add_special_tokens=False) == [tok.token_to_id(token)]
    assert len(TOOL_TOKENS) == 9
    assert tok.encode("hi")[0] == tok.bos_token_id
    assert tok.encode("hi", add_special_tokens=False)[0] != tok.bos_token_id


def test_digits_are_split_one_per_token(trained_dir: Path) -> None:
    tok = Tokenizer.from_pretrained(trained_dir)
    ids = tok.encode("98765", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids] == list("98765")


def test_a_space_before_a_number_stays_with_its_first_digit(trained_dir: Path) -> None:
    tok = Tokenizer.from_pretrained(trained_dir)
    ids = tok.encode("is 96+7", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids][-4:] == [" 9", "6", "+", "7"]


def test_transformers_loads_files_with_identical_encode_decode(trained_dir: Path) -> None:
    ours = Tokenizer.from_pretrained(trained_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(trained_dir)
    assert len(theirs) == ours.vocab_size
    assert theirs.bos_token_id == ours.bos_token_id and theirs.eos_token_id == ours.eos_token_id
    assert theirs.pad_token_id == ours.pad_token_id
    for text in SAMPLES:
        for add in (True, False):
            ids = ours.encode(text, add_special_tokens=add)
            assert ids == theirs.encode(text, add_special_tokens=add), text
        ids = ours.encode(text)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
        assert ours.decode(ours.encode(text, add_special_tokens=False)) == text


def test_think_tags_survive_skip_special_tokens(trained_dir: Path) -> None:
    tok = Tokenizer.from_pretrained(trained_dir)
    text = f"{THINK_OPEN}a{THINK_CLOSE}b"
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == text


def test_deepseek_style_config_loads_like_transformers(tmp_path: Path) -> None:
    """DeepSeek's config has AddedToken dicts, LlamaTokenizerFast, legacy and pad = EOS."""
    Tokenizer.train(CORPUS, vocab_size=400).save_pretrained(tmp_path)
    post = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))["post_processor"]
    assert post["type"] == "TemplateProcessing" and post["single"][0]["SpecialToken"]["id"] == BOS
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))

    def added(content: str) -> dict[str, object]:
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
        }

    config.update(
        tokenizer_class="LlamaTokenizerFast",
        legacy=True,
        bos_token=added(BOS),
        eos_token=added(EOS),
        pad_token=added(EOS),
        add_bos_token=True,
        add_eos_token=False,
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    ours = Tokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert ours.pad_token_id == ours.eos_token_id
    for text in SAMPLES:
        assert ours.encode(text) == theirs.encode(text)
        assert ours.encode(text)[0] == ours.bos_token_id


def test_small_vocab_uses_corpus_alphabet_and_unknown_token(tmp_path: Path) -> None:
    corpus = ["12+34=46 <answer>46</answer>", "7*8=56"] * 20
    tok = Tokenizer.train(corpus, vocab_size=60, full_byte_alphabet=False)
    assert tok.vocab_size <= 60
    tok.save_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tok.decode(tok.encode("12+34=46", add_special_tokens=False)) == "12+34=46"
    ids = tok.encode("5z", add_special_tokens=False)
    assert ids == [tok.token_to_id("5"), tok.token_to_id(UNK)]
    assert theirs.encode("5z", add_special_tokens=False) == ids


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size 10"):
        Tokenizer.train(CORPUS, vocab_size=10)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    Tokenizer.train(CORPUS, vocab_size=300).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": "<nope>"}', encoding="utf-8")
    with pytest.raises(ValueError, match="<nope>"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        Tokenizer.from_pretrained(tmp_path)


def test_cli_trains_small_vocab_on_tasks_and_encodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from tinyseek.commands import tokenizer as tokenizer_command

    parser = argparse.ArgumentParser()
    tokenizer_command.add_parsers(parser.add_subparsers(dest="command"))
    corpus = tmp_path / "extra.txt"
    corpus.write_text("an extra line of text\n", encoding="utf-8")
    args = parser.parse_args(
        [
            "tokenizer",
            "train",
            "--task",
            "addition,countdown",
            "--task-problems",
            "50",
            "--corpus",
            str(corpus),
            "--vocab-size",
            "300",
            "--small-alphabet",
            "--out",
            str(tmp_path / "tok"),
            "--json",
        ]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vocab_size"] <= 300
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    question = "Avec les nombres 3, 4, 25, obtenez 87"
    assert tok.decode(tok.encode(question, add_special_tokens=False)) == question
    args = parser.parse_args(["tokenizer", "encode", "--tokenizer", str(tmp_path / "tok"), "12+3", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["pieces"] == [BOS, "1", "2", "+", "3"]
    args = parser.parse_args(["tokenizer", "train", "--vocab-size", "300", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--corpus"):
        args.func(args)
