"""Verifiable reasoning tasks: procedurally generated problems, worked solutions, verifiers.

`get_task(name)` is the one entry point the trainers, RL loop and CLI use. Procedural families are
registered in `TASKS`; a name `gsm8k:PATH` or `math:PATH` loads a benchmark file instead.
"""

from __future__ import annotations

from tinyseek.tasks.base import LANGUAGES, Problem, Split, Task, split_of
from tinyseek.tasks.coding import CodingTask
from tinyseek.tasks.column_arithmetic import AdditionTask, MultiplicationTask, SubtractionTask
from tinyseek.tasks.countdown import CountdownTask
from tinyseek.tasks.datasets import STYLES, FileTask
from tinyseek.tasks.gcd import GcdTask
from tinyseek.tasks.linear import LinearEquationTask
from tinyseek.tasks.reasoning import ReasoningTask, Trace

TASKS: dict[str, type[Task]] = {
    "addition": AdditionTask,
    "subtraction": SubtractionTask,
    "multiplication": MultiplicationTask,
    "countdown": CountdownTask,
    "linear": LinearEquationTask,
    "gcd": GcdTask,
    "coding": CodingTask,
}


def get_task(name: str) -> Task:
    """A task by registered name, or a benchmark file as `gsm8k:PATH` / `math:PATH`."""
    style, sep, path = name.partition(":")
    if sep and style in STYLES:
        return FileTask(path, style)  # type: ignore[arg-type]
    if name not in TASKS:
        files = ", ".join(f"{s}:PATH" for s in STYLES)
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)} or {files}")
    return TASKS[name]()


__all__ = [
    "LANGUAGES",
    "TASKS",
    "FileTask",
    "Problem",
    "ReasoningTask",
    "Split",
    "Task",
    "Trace",
    "get_task",
    "split_of",
]
