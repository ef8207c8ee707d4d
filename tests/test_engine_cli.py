"""`tinyseek generate` end to end on a saved tiny model, and the chat command's reasoning display."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.fixtures import greedy_reference, random_model
from tinyseek.commands import generate


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tinyseek")
    generate.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_generate_json_with_prompt_ids(tmp_path, capsys):
    model = random_model(num_nextn_predict_layers=0)
    model.save_pretrained(tmp_path)
    argv = ["generate", "--model", str(tmp_path), "--prompt-ids", "1,2,3", "--temperature", "0"]
    assert _run([*argv, "--max-tokens", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["outputs"][0]["token_ids"] == greedy_reference(model, [1, 2, 3], 6)
    assert out["outputs"][0]["finish_reason"] == "length"
    assert out["prompt_cache_miss_tokens"] == 3


@pytest.mark.slow
def test_generate_compiled_gives_the_greedy_reference(tmp_path, capsys):
    """`--compile` (the engine's decode forward compiled) changes no token."""
    model = random_model(num_nextn_predict_layers=0)
    model.save_pretrained(tmp_path)
    argv = ["generate", "--model", str(tmp_path), "--prompt-ids", "4,5,6", "--temperature", "0", "--compile"]
    assert _run([*argv, "--max-tokens", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["token_ids"] == greedy_reference(
        model, [4, 5, 6], 8
    )


def test_generate_rejects_bad_values_before_loading(tmp_path):
    with pytest.raises(ValueError, match="top_p"):
        _run(["generate", "--model", str(tmp_path), "--prompt-ids", "1", "--top-p", "2"])
    random_model(num_nextn_predict_layers=0).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="prompt-ids"):
        _run(["generate", "--model", str(tmp_path), "--prompt-ids", "1,x"])


def test_reasoning_printer_splits_at_think_close_across_deltas(capsys):
    printer = generate.ReasoningPrinter(thinking=True, color=False)
    for piece in ["Let me add: 2+2", "=4.</thi", "nk>\n\nThe answer", " is 4."]:
        printer.feed(piece)
    printer.close()
    shown = capsys.readouterr().out
    assert shown.startswith("[thinking] Let me add: 2+2=4.\n[answer] ")
    assert printer.answer.strip() == "The answer is 4."
    opened = generate.ReasoningPrinter(thinking=False, color=True)
    for piece in ["<thi", "nk>hmm</think>ok"]:
        opened.feed(piece)
    opened.close()
    assert opened.answer == "ok" and generate.DIM + "hmm" + generate.RESET in capsys.readouterr().out
