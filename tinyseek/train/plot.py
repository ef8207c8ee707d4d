"""PNG curves of a run: one figure per numeric metric in RUN_DIR/metrics.jsonl.

Design choices:
- matplotlib with the Agg backend (files only, no display needed: works on servers and in CI).
- One PNG per metric, named after it with `/` turned into `__`, in RUN_DIR/plots/; a metric logged
  only at some steps (eval) is drawn at those steps. Non-numeric and non-finite values are skipped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from tinyseek.train.metrics import read_metrics

PLOTS = "plots"
_SKIPPED = {"step", "time"}


def metric_series(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """metric name -> (steps, values) over every numeric, finite value in the log."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in read_metrics(run_dir):
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for key, value in record.items():
            if key in _SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write one PNG per metric; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = metric_series(run_dir)
    if not series:
        raise ValueError(f"{Path(run_dir) / 'metrics.jsonl'}: no numeric metrics to plot")
    target = Path(out_dir) if out_dir is not None else Path(run_dir) / PLOTS
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for key, (steps, values) in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values, marker="." if len(steps) < 50 else None)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        file = target / (re.sub(r"[^A-Za-z0-9_.-]", "_", key.replace("/", "__")) + ".png")
        fig.tight_layout()
        fig.savefig(file, dpi=80)
        plt.close(fig)
        written.append(file)
    return written
