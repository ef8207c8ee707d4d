"""`tinyseek eval --base-url`: the endpoint evaluation against tinyseek's own server over real HTTP.

The in-process evaluation of the same model directory is the reference: with the same seeds every
sample (text, finish reason, token counts, verdict) and every metric must be identical. A proxy in
front of the server injects 429s, 500s (before and after the server did the work) and stalls past
the client's timeout; the report must still be complete and identical. An interrupted run resumes
from its results file without asking again for what it has.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.endpoint_proxy import FlakyProxy
from tests.fixtures import chat_model_dir, markov_model_dir
from tests.serve_harness import RunningServer
from tinyseek.chat_template import THINK_CLOSE
from tinyseek.cli import main
from tinyseek.eval.endpoint import evaluate_endpoint
from tinyseek.eval.endpoint_client import EndpointClient, parse_chat_choice, parse_text_choice
from tinyseek.eval.problems import problem_sets
from tinyseek.eval.result_log import ResultLog
from tinyseek.eval.runner import EvalReport, evaluate
from tinyseek.inference.llm import LLM
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.serve.state import ServerSettings
from tinyseek.tokenizer import Tokenizer

MODEL = "tiny-r1"
K = 3
SAMPLING = {"k": K, "temperature": 0.9, "top_p": 0.95, "max_tokens": 40, "seed": 5}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_model_dir(tmp_path_factory.mktemp("tiny-r1"))


@pytest.fixture(scope="module")
def server(model_dir: Path):
    running = RunningServer(ServerSettings(model_dir=model_dir, served_model_name=MODEL))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sets() -> list:
    return problem_sets(["addition", "gcd"], n=4, seed=SAMPLING["seed"])  # what the CLI poses with --seed


@pytest.fixture(scope="module")
def reference(model_dir: Path, sets: list) -> EvalReport:
    return evaluate(LLM(model_dir), sets, template="chat", greedy=True, **SAMPLING)


def _client(base_url: str, **kwargs: object) -> EndpointClient:
    return EndpointClient(base_url, MODEL, backoff=0.02, max_backoff=0.1, concurrency=4, **kwargs)  # type: ignore[arg-type]


def _samples(report: EvalReport) -> list:
    return [(r.task, r.canonical, r.samples, r.greedy) for r in report.records]


def _assert_same(report: EvalReport, reference: EvalReport) -> None:
    assert _samples(report) == _samples(reference)
    assert report.families == reference.families
    assert report.overall == reference.overall


def test_endpoint_eval_equals_in_process_eval(
    server: RunningServer, model_dir: Path, sets: list, reference: EvalReport, tmp_path: Path
) -> None:
    with _client(f"{server.base_url}/v1") as client:
        report = evaluate_endpoint(
            client, sets, tmp_path / "run.jsonl", template="chat", greedy=True, concurrency=4,
            tokenizer=Tokenizer.from_pretrained(model_dir), price_in=0.55, price_out=2.19, **SAMPLING,
        )  # fmt: skip
    _assert_same(report, reference)
    texts = [s.text for r in report.records for s in r.samples]
    assert any("</think>" in t for t in texts) and any("</think>" not in t for t in texts)  # both kinds
    usage = report.usage
    assert usage is not None and usage["requests"] == 8 * (K + 1) and usage["retries"] == 0
    assert usage["completion_tokens"] == reference.generated_tokens == report.generated_tokens
    assert 0 < usage["reasoning_tokens"] < usage["completion_tokens"]
    expected_cost = (usage["prompt_tokens"] * 0.55 + usage["completion_tokens"] * 2.19) / 1e6
    assert usage["cost"] == pytest.approx(expected_cost)
    assert "usage:" in report.markdown() and "cost $" in report.markdown()


def test_an_empty_answer_after_think_is_told_from_an_unclosed_reasoning(
    server: RunningServer, model_dir: Path
) -> None:
    """`reasoning</think>` + EOS and a reasoning cut by EOS both come back as answer "": the usage
    counts tell them apart, so the rebuilt text equals the in-process one on every seed."""
    llm = LLM(model_dir)
    prompt = llm.chat_prompt([{"role": "user", "content": "What is 12 + 30?"}])
    params = [SamplingParams(max_tokens=40, temperature=1.0, seed=s) for s in range(600)]
    texts = [out.outputs[0].text for out in llm.generate([prompt] * len(params), params)]
    closed_empty = [s for s, t in enumerate(texts) if t.endswith(THINK_CLOSE) and t.count(THINK_CLOSE) == 1]
    unclosed_eos = [s for s, t in enumerate(texts) if THINK_CLOSE not in t and len(t) < 40]
    assert closed_empty and unclosed_eos
    seeds = closed_empty[:8] + unclosed_eos[:8] + list(range(8))  # the ambiguous kinds, and a few others
    with _client(f"{server.base_url}/v1") as client, ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(
                lambda s: (
                    client.chat(
                        [{"role": "user", "content": "What is 12 + 30?"}],
                        {"max_tokens": 40, "temperature": 1.0, "seed": s},
                    ).text
                ),
                seeds,
            )
        )
    assert got == [texts[s] for s in seeds]


def test_r1zero_template_through_completions_equals_in_process(tmp_path: Path) -> None:
    """The base-model path: /v1/completions with the R1-Zero prompt, `</answer>` stop put back."""
    model_dir = markov_model_dir(tmp_path / "markov")
    gcd = problem_sets(["gcd"], n=12)
    sampling = {"k": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 40, "seed": 1}
    reference = evaluate(LLM(model_dir), gcd, template="r1zero", **sampling)
    running = RunningServer(ServerSettings(model_dir=model_dir, served_model_name=MODEL))
    try:
        with _client(f"{running.base_url}/v1") as client:
            report = evaluate_endpoint(
                client, gcd, tmp_path / "r1zero.jsonl", template="r1zero",
                tokenizer=Tokenizer.from_pretrained(model_dir), **sampling,
            )  # fmt: skip
    finally:
        running.stop()
    _assert_same(report, reference)
    assert 0 < report.overall["pass@1"] < 1 and report.overall["format_rate"] > 0.5


def test_injected_429_500_and_timeouts_still_give_the_complete_report(
    server: RunningServer, model_dir: Path, sets: list, reference: EvalReport, tmp_path: Path
) -> None:
    chaos = random.Random(0)
    actions = ["pass"] * 10 + ["429"] * 3 + ["500"] * 2 + ["late500"] + ["stall"]

    def plan(n: int) -> str:
        return "pass" if n >= 200 else chaos.choice(actions)  # bounded, so the test always ends

    # A stall outlasts the client's timeout; the timeout is far above a request's time on a busy
    # 2-core machine (a 1.5 s one timed every request out there, and the test failed).
    proxy = FlakyProxy(server.base_url, plan, stall_seconds=7.0)
    try:
        with _client(proxy.base_url, timeout=6.0, max_retries=20) as client:
            report = evaluate_endpoint(
                client, sets, tmp_path / "flaky.jsonl", template="chat", greedy=True, concurrency=4,
                tokenizer=Tokenizer.from_pretrained(model_dir), **SAMPLING,
            )  # fmt: skip
    finally:
        proxy.stop()
    assert {"429", "500", "late500", "stall"} <= set(proxy.actions)
    assert report.usage is not None and report.usage["retries"] >= sum(a != "pass" for a in proxy.actions) - 4
    _assert_same(report, reference)


def test_a_slow_request_does_not_hold_up_the_others(
    server: RunningServer, sets: list, tmp_path: Path
) -> None:
    """The pool refills as each request finishes, not once a whole window has: the first request
    stalls until every other one has gone by (a pool that waited for it would leave the stall to run
    out its 60 s with one request through)."""
    others = 8 * K - 1
    stall = lambda n: "stall" if n == 0 else "pass"  # noqa: E731
    proxy = FlakyProxy(server.base_url, stall, stall_seconds=60.0, release_after=others)
    try:
        with _client(proxy.base_url, timeout=120.0) as client:
            evaluate_endpoint(
                client, sets, tmp_path / "slow.jsonl", template="chat", concurrency=2, **SAMPLING
            )
    finally:
        proxy.stop()
    assert proxy.forwarded_during_stalls[0] == others  # everything else went by meanwhile


def test_an_interrupted_run_resumes_without_asking_again(
    server: RunningServer,
    model_dir: Path,
    reference: EvalReport,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results, out = tmp_path / "resume.jsonl", tmp_path / "resumed.json"
    args = [
        "eval", "--base-url", "", "--served-model", MODEL, "--task", "addition,gcd", "--n", "4",
        "--split", "test", "-k", str(K), "--temperature", "0.9", "--top-p", "0.95", "--max-tokens", "40",
        "--seed", "5", "--greedy", "--concurrency", "2", "--results", str(results), "--max-retries", "0",
        "--tokenizer", str(model_dir), "--no-progress", "--out", str(out),
    ]  # fmt: skip
    broken = FlakyProxy(server.base_url, lambda n: "pass" if n < 10 else "401")
    try:
        args[2] = broken.base_url
        assert main(args) == 1
    finally:
        broken.stop()
    saved = len(results.read_text().splitlines()) - 1
    assert 10 <= saved < 8 * (K + 1)
    with results.open("ab") as f:
        f.write(b'{"key": "cut sho')  # a line cut by a kill
    counting = FlakyProxy(server.base_url, lambda n: "pass")
    try:
        args[2] = counting.base_url
        assert main(args) == 0
    finally:
        counting.stop()
    assert counting.forwarded == 8 * (K + 1) - saved
    rows = [json.loads(line) for line in results.read_text().splitlines()[1:]]
    assert len(rows) == len({r["key"] for r in rows}) == 8 * (K + 1)
    assert "401" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["overall"] == reference.overall and report["usage"]["resumed"] == saved


# In the slow tier: on a loaded 2-core machine (two training runs beside the suite) the CLI twice
# did not exit within 60 s of SIGINT while its requests stalled; alone it exits in well under 5 s.
# Until that hang is understood it must not decide whether a change lands.
@pytest.mark.slow
def test_ctrl_c_stops_at_once_and_keeps_the_finished_samples(server: RunningServer, tmp_path: Path) -> None:
    """SIGINT while requests hang: the CLI exits 130 without waiting for them, the file stays valid."""
    proxy = FlakyProxy(server.base_url, lambda n: "pass" if n < 6 else "stall", stall_seconds=20.0)
    results = tmp_path / "ctrl-c.jsonl"
    command = [
        sys.executable, "-m", "tinyseek", "eval", "--base-url", proxy.base_url, "--served-model", MODEL,
        "--task", "gcd", "--n", "4", "-k", str(K), "--max-tokens", "40", "--concurrency", "2",
        "--results", str(results), "--no-progress", "--timeout", "120",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (results.exists() and len(results.read_text().splitlines()) == 7):
            assert time.monotonic() < deadline and process.poll() is None, "six samples never arrived"
            time.sleep(0.05)
        time.sleep(0.3)  # both workers now wait on stalled requests
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)  # "at once": far below the 120 s request timeout
        assert time.monotonic() - interrupted < 5
    finally:
        process.kill()
        proxy.stop()
    assert process.returncode == 130 and "rerun to resume" in err
    assert len(ResultLog(results, json.loads(results.read_text().splitlines()[0])["settings"]).records) == 6


def test_cli_endpoint_report_matches_library(
    server: RunningServer,
    model_dir: Path,
    reference: EvalReport,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report.json"
    assert main([
        "eval", "--base-url", f"{server.base_url}/v1", "--served-model", MODEL, "--task", "addition,gcd",
        "--n", "4", "-k", str(K), "--temperature", "0.9", "--max-tokens", "40", "--seed", "5",
        "--greedy", "--results", str(tmp_path / "cli.jsonl"), "--tokenizer", str(model_dir),
        "--no-progress", "--out", str(out), "--price-in", "0.55", "--price-out", "2.19",
    ]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "| addition |" in text and "cost $" in text
    report = json.loads(out.read_text())
    assert report["usage"]["requests"] == 8 * (K + 1)
    assert report["settings"]["reasoning_tokens_from"] == "tokenizer"
    assert report["overall"] == reference.overall and report["families"] == reference.families


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base-url", "http://127.0.0.1:1/v1"], "--base-url needs --served-model"),
        (["--base-url", "http://x/v1", "--model", "m", "--served-model", "m"], "not both"),
        (["--base-url", "http://x/v1", "--served-model", "m", "--concurrency", "0"], "--concurrency 0"),
        (["--base-url", "http://x/v1", "--served-model", "m", "--price-in", "-1"], "--price-in -1"),
        ([], "give either --model DIR"),
        (
            ["--model", "m", "--price-in", "1", "--results", "r.jsonl"],
            "--results, --price-in only applies with --base-url",
        ),
        (
            ["--base-url", "http://x/v1", "--served-model", "m", "--dtype", "bfloat16"],
            "--dtype only applies with --model",
        ),
        (
            ["--base-url", "http://x/v1", "--served-model", "m", "--compile"],
            "--compile only applies with --model",
        ),
    ],
)
def test_bad_arguments_name_the_value(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--task", "addition", "--n", "1", *extra]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected an http"):
        EndpointClient("127.0.0.1:8000", MODEL)


def test_reasoning_is_read_from_any_field_or_from_think_tags() -> None:
    def body(**message: object) -> dict:
        return {"choices": [{"message": message, "finish_reason": "stop"}]}

    assert parse_chat_choice(body(content="A", reasoning_content="R")).text == "R</think>A"
    assert parse_chat_choice(body(content="A", reasoning="R")).text == "R</think>A"
    assert parse_chat_choice(body(content="<think>R</think>A")).reasoning == "R"
    assert parse_chat_choice(body(content="R</think>A")).text == "R</think>A"
    assert parse_chat_choice(body(content="plain")).reasoning is None
    unclosed = parse_chat_choice(body(content="", reasoning_content="R"))
    assert unclosed.text == "R"
    closed = {"choices": [{"message": {"content": "", "reasoning_content": "R"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 4, "completion_tokens_details": {"reasoning_tokens": 2}}}  # fmt: skip
    assert parse_chat_choice(closed).text == "R</think>"
    text = {"choices": [{"text": "<think>r</think><answer>4", "finish_reason": "stop"}]}
    assert parse_text_choice(text, ["</answer>"]).text.endswith("<answer>4</answer>")
    vllm = {"choices": [{"text": "x", "finish_reason": "stop", "stop_reason": "</answer>"}]}
    assert parse_text_choice(vllm, ["</answer>"]).text == "x</answer>"


def test_results_file_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    log = ResultLog(path, {"seed": 1})
    log.append({"key": "a", "text": "t"})
    log.close()
    assert "a" in ResultLog(path, {"seed": 1})
    with pytest.raises(ValueError, match="seed: 1 there, 2 now"):
        ResultLog(path, {"seed": 2})
