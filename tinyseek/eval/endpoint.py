"""Evaluate a model behind any OpenAI-compatible endpoint the way `evaluate` does in process.

    client = EndpointClient("http://127.0.0.1:8000/v1", "my-model", api_key=None)
    report = evaluate_endpoint(client, problem_sets(["addition"], n=100), k=4, results="run.jsonl")

Design choices:
- Same problems, seeds, scorer and report as `tinyseek.eval.runner.evaluate`: sample i of a problem
  is asked with seed `problem_seed(...) + i`, exactly what the in-process run's request with `n=k`
  gives its completion i, so against tinyseek's own server both runs see the same samples.
- The `chat` template sends the question as one user message (the server applies its own chat
  template); `r1zero` sends the R1-Zero prompt text to `/completions` with `</answer>` as the stop.
- Requests run on `concurrency` worker threads; each finished sample is appended to the results
  file at once (`ResultLog`), so an interrupted run resumes without asking again what it
  already has, and the report is always computed from that file.
- Reasoning length: with the model's tokenizer (`tokenizer=`) counted exactly as in process; without
  it, the server's `usage.completion_tokens_details.reasoning_tokens` (one request per sample, so the
  usage is the sample's); a server that reports none gets the reasoning's share of its completion
  tokens, by characters. `settings["reasoning_tokens_from"]` says which.
- A record's `prompt` is what was sent (the question, or the R1-Zero prompt text): the server renders
  its own chat template, which the client never sees.
- Usage is totalled over every sample in the file (a resumed run's cost includes the earlier part);
  `price_in` / `price_out` are dollars per 1M prompt / completion tokens.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tinyseek.chat_template import r1_zero_prompt
from tinyseek.eval.endpoint_client import EndpointClient, EndpointCompletion
from tinyseek.eval.problems import ProblemSet
from tinyseek.eval.result_log import ResultLog
from tinyseek.eval.runner import (
    EvalReport,
    ProblemRecord,
    check_sets,
    family_metrics,
    family_records,
    judge,
    problem_seed,
    run_settings,
    token_counter,
)
from tinyseek.tasks import Problem
from tinyseek.tasks.completion import TEMPLATE_STOPS, TEMPLATE_STYLES, Template, check_template

log = logging.getLogger(__name__)

GREEDY = -1  # the sample index of the temperature-0 sample


@dataclass(frozen=True)
class _Job:
    """One request: which sample of which problem, and what to send."""

    key: str
    task: str
    canonical: str
    lang: str
    sample: int
    prompt: str
    seed: int | None


def sample_key(family: str, problem: Problem, lang: str, sample: int) -> str:
    """The results-file key of one sample (GREEDY for the temperature-0 one)."""
    return f"{family}\t{problem.canonical}\t{lang}\t{'greedy' if sample == GREEDY else sample}"


def _jobs(sets: Sequence[ProblemSet], k: int, seed: int, greedy: bool, template: Template) -> list[_Job]:
    jobs = []
    for problem_set in sets:
        for problem in problem_set.problems:
            prompt = _sent_prompt(problem_set, problem, template)
            base = problem_seed(seed, problem, problem_set.lang)
            for i in [*range(k), *([GREEDY] if greedy else [])]:
                jobs.append(
                    _Job(
                        sample_key(problem_set.name, problem, problem_set.lang, i),
                        problem_set.name, problem.canonical, problem_set.lang, i, prompt,
                        None if i == GREEDY else base + i,
                    )
                )  # fmt: skip
    return jobs


def _sent_prompt(problem_set: ProblemSet, problem: Problem, template: Template) -> str:
    """What is sent: the question as a chat message, or the R1-Zero prompt text to /completions."""
    question = problem_set.task.prompt(problem, problem_set.lang)
    return question if template == "chat" else r1_zero_prompt(question)


def _ask(
    client: EndpointClient, job: _Job, template: Template, sampling: dict[str, Any], stops: list[str]
) -> dict[str, Any]:
    """Send one job and return its results-file record."""
    params = dict(sampling)
    if job.sample == GREEDY:
        params["temperature"] = 0.0
        params.pop("top_p", None)
    else:
        params["seed"] = job.seed
    if template == "chat":
        done: EndpointCompletion = client.chat([{"role": "user", "content": job.prompt}], params)
    else:
        done = client.complete(job.prompt, params, stops)
    return {
        "key": job.key,
        "task": job.task,
        "canonical": job.canonical,
        "lang": job.lang,
        "sample": job.sample,
        "seed": job.seed,
        "text": done.text,
        "reasoning": done.reasoning,
        "finish_reason": done.finish_reason,
        "usage": {
            "prompt_tokens": done.usage.prompt_tokens,
            "completion_tokens": done.usage.completion_tokens,
            "reasoning_tokens": done.usage.reasoning_tokens,
            "cached_tokens": done.usage.cached_tokens,
        },
    }


def _run_jobs(
    client: EndpointClient,
    jobs: list[_Job],
    results: ResultLog,
    template: Template,
    sampling: dict[str, Any],
    stops: list[str],
    concurrency: int,
    progress: bool,
) -> None:
    """Ask every job not already in `results`, at most `concurrency` at a time.

    Daemon worker threads take jobs one by one (a slow request holds up no other) and hand back
    records or errors; the main thread writes the records. After the first error no new job is
    taken and the requests in flight are saved before the error is raised, so a rerun resumes
    after them. Ctrl-C returns at once: the daemon workers die with the process, mid-request.
    """
    todo: queue.SimpleQueue[_Job] = queue.SimpleQueue()
    for job in jobs:
        if job.key not in results:
            todo.put(job)
    done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    stopping = threading.Event()

    def work() -> None:
        while not stopping.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                break
            try:
                done.put(("record", _ask(client, job, template, sampling, stops)))
            except Exception as err:
                done.put(("error", err))
        done.put(("exit", None))

    bar = tqdm(total=len(jobs), initial=len(jobs) - todo.qsize(), disable=not progress, unit="sample")
    workers = [
        threading.Thread(target=work, name=f"tinyseek-eval-{i}", daemon=True) for i in range(concurrency)
    ]
    error: BaseException | None = None
    try:
        for worker in workers:
            worker.start()
        running = len(workers)
        while running:
            kind, item = done.get()
            if kind == "exit":
                running -= 1
            elif kind == "error":
                error = error or item
                stopping.set()
            else:
                results.append(item)
                bar.update(1)
    except KeyboardInterrupt:  # what is saved is saved; the requests in flight are dropped
        stopping.set()
        client.abort()
        raise
    finally:
        bar.close()
    if error is not None:
        raise error


def _reasoning_counter(
    records: Sequence[dict[str, Any]], tokenizer: Any | None
) -> tuple[Callable[[int, str], int], str]:
    """Reasoning tokens of record i from its reasoning text: tokenizer, usage, or a share of usage."""
    if tokenizer is not None:
        count = token_counter(tokenizer)
        return (lambda _, reasoning: count(reasoning)), "tokenizer"

    def from_usage(i: int, reasoning: str) -> int:
        usage, text = records[i]["usage"], records[i]["text"]
        if usage.get("reasoning_tokens") is not None and records[i]["reasoning"] is not None:
            return int(usage["reasoning_tokens"])
        total = usage.get("completion_tokens") or 0
        return round(total * len(reasoning) / len(text)) if text else 0

    return from_usage, "usage"


def _usage_totals(
    records: Sequence[dict[str, Any]], price_in: float | None, price_out: float | None
) -> dict[str, float]:
    totals = {
        name: float(sum(r["usage"].get(name) or 0 for r in records))
        for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
    }
    totals["requests"] = float(len(records))
    if price_in is not None or price_out is not None:
        totals["cost"] = (
            totals["prompt_tokens"] * (price_in or 0.0) + totals["completion_tokens"] * (price_out or 0.0)
        ) / 1e6
    return totals


def evaluate_endpoint(
    client: EndpointClient,
    sets: ProblemSet | Sequence[ProblemSet],
    results: str | Path,
    k: int = 4,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_tokens: int = 512,
    template: Template = "chat",
    seed: int = 0,
    greedy: bool = False,
    concurrency: int = 8,
    tokenizer: Any | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
    progress: bool = False,
) -> EvalReport:
    """Ask the endpoint for k samples per problem (resuming from `results`), score them, report."""
    sets = check_sets(sets, k)
    if concurrency < 1:
        raise ValueError(f"concurrency = {concurrency}: expected at least 1 request at a time")
    for name, price in (("price_in", price_in), ("price_out", price_out)):
        if price is not None and price < 0:
            raise ValueError(f"{name} = {price}: expected dollars per 1M tokens, >= 0")
    template = check_template(template)
    stops = list(TEMPLATE_STOPS[template])
    style = TEMPLATE_STYLES[template]
    sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    identity = {"model": client.model, **sampling, "template": template, "seed": seed, "stop": stops}

    log_file = ResultLog(results, identity)
    jobs = _jobs(sets, k, seed, greedy, template)
    log.info(
        "evaluating %s: %d requests, %d already in %s", client.base_url, len(jobs), log_file.resumed, results
    )
    start = time.perf_counter()
    retries_before = client.retries
    try:
        _run_jobs(client, jobs, log_file, template, sampling, stops, concurrency, progress)
    finally:
        log_file.close()
    seconds = time.perf_counter() - start

    by_key = log_file.records
    records: list[ProblemRecord] = []
    families: dict[str, dict[str, float]] = {}
    used: list[dict[str, Any]] = []
    source = "usage"
    for problem_set in sets:
        rows = [by_key[job.key] for job in jobs if job.task == problem_set.name]
        count, source = _reasoning_counter(rows, tokenizer)
        samples = iter(
            judge(
                problem_set.task,
                [p for p in problem_set.problems for _ in range(k + greedy)],
                [r["text"] for r in rows],
                style,
                problem_set.lang,
                [_completion_tokens(r, tokenizer) for r in rows],
                [r["finish_reason"] for r in rows],
                count,
            )
        )
        sent = [_sent_prompt(problem_set, problem, template) for problem in problem_set.problems]
        family = family_records(problem_set, sent, samples, k, greedy)
        families[problem_set.name] = family_metrics(family, k)
        records += family
        used += rows
    usage = _usage_totals(used, price_in, price_out)
    usage["retries"] = float(client.retries - retries_before)
    usage["resumed"] = float(log_file.resumed)
    settings = {
        **run_settings(sets, k, temperature, top_p, max_tokens, template, style, stops, seed, greedy),
        "endpoint": client.base_url,
        "model": client.model,
        "results": str(results),
        "reasoning_tokens_from": source,
    }
    generated = sum(
        s.completion_tokens for r in records for s in [*r.samples, *([r.greedy] if r.greedy else [])]
    )
    return EvalReport(settings, families, family_metrics(records, k), records, seconds, generated, usage)


def _completion_tokens(record: dict[str, Any], tokenizer: Any | None) -> int:
    """The server's count; without one, the tokenizer's count of the text (or 0)."""
    reported = record["usage"].get("completion_tokens")
    if reported is not None:
        return int(reported)
    if tokenizer is None:
        return 0
    return token_counter(tokenizer)(record["text"])
