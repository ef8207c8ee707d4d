"""Splitting at </think> (whole and streamed) and naming bad parameters: pure functions, no server."""

from __future__ import annotations

import random

import pytest

from tinyseek.serve.errors import param_name, validation_error
from tinyseek.serve.reasoning import ReasoningSplitter, prompt_opens_reasoning, split_reasoning


def stream_split(pieces: list[str], in_reasoning: bool = True) -> tuple[str, str]:
    splitter = ReasoningSplitter(in_reasoning)
    reasoning, content = [], []
    for piece in pieces:
        out = splitter.feed(piece)
        reasoning.append(out.reasoning)
        content.append(out.content)
    tail = splitter.finish()
    return "".join(reasoning) + tail.reasoning, "".join(content) + tail.content


def test_split_whole_completion() -> None:
    assert split_reasoning("a</think>b</think>c") == ("a", "b</think>c")
    assert split_reasoning("still thinking") == ("still thinking", "")
    assert split_reasoning("</think>") == ("", "")
    assert split_reasoning("x</think>y", in_reasoning=False) == (None, "x</think>y")


@pytest.mark.parametrize(
    "text",
    [
        "reason</think>answer",
        "r</thi</think>a",
        "<</think></",
        "no marker at all </thin",
        "</think>",
        "",
        "a<>/b",
    ],
)
def test_streamed_split_equals_whole_split_at_every_cut(text: str) -> None:
    """Any cut of the text into pieces (marker split anywhere) gives the one-piece split."""
    reasoning, content = split_reasoning(text)
    for cut in range(len(text) + 1):
        assert stream_split([text[:cut], text[cut:]]) == (reasoning, content)
    assert stream_split(list(text)) == (reasoning, content)


def test_streamed_split_random_pieces() -> None:
    rng = random.Random(0)
    alphabet = ["<", "/", "t", "h", "i", "n", "k", ">", "x", "</think>", "</th", "ink>"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(3, len(text) + 1)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert stream_split(pieces) == split_reasoning(text), pieces


def test_held_back_text_is_released_only_when_it_cannot_be_the_marker() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("abc</th").reasoning == "abc"
    assert splitter.feed("e").reasoning == "</the"
    assert splitter.feed("</").reasoning == ""
    out = splitter.feed("think>answer")
    assert (out.reasoning, out.content) == ("", "answer")
    assert splitter.feed("</think>more").content == "</think>more"


def test_no_reasoning_mode_passes_everything_as_content() -> None:
    assert stream_split(["a</th", "ink>b"], in_reasoning=False) == ("", "a</think>b")


def test_prompt_opens_reasoning() -> None:
    assert prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n")
    assert not prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜>")


def test_param_names_follow_openai() -> None:
    assert param_name(("body", "messages", 0, "role")) == "messages[0].role"
    assert param_name(("body", "max_tokens")) == "max_tokens"
    assert param_name(("body",)) is None


def test_union_errors_name_the_shared_field() -> None:
    errors = [
        {"loc": ("body", "stop", "str"), "type": "string_type", "msg": "Input should be a valid string"},
        {"loc": ("body", "stop", "list[str]"), "type": "list_type", "msg": "Input should be a valid list"},
    ]
    err = validation_error(errors)
    assert (err.status, err.param, err.code) == (400, "stop", "invalid_type")
    missing = validation_error([{"loc": ("body", "model"), "type": "missing", "msg": "Field required"}])
    assert (missing.param, missing.code) == ("model", "missing_required_parameter")
    extra = validation_error([{"loc": ("body", "foo"), "type": "extra_forbidden", "msg": "Extra"}])
    assert extra.param == "foo" and "Unrecognized" in extra.message
