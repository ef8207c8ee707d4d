"""Price a real run: read its measured tokens/s, turn an hourly price into dollars per 1M tokens.

The run-directory contract (what any tinyseek run that wants pricing writes):
- `RUN_DIR/metrics.jsonl`: one JSON object per line, any keys. Throughput keys are `tokens_per_s`,
  `train/tokens_per_s` (tokens trained per second) and `rollout/tokens_per_s` (tokens generated per
  second); for each, the LAST line that has it wins (the run's latest, usually smoothed, figure).
- `RUN_DIR/summary.json` (optional): one JSON object; any of the same keys there override metrics.jsonl,
  since a summary is the run's final word.
Extra keys are ignored; unparsable lines (a run killed mid-write) and non-numeric or non-positive
values are skipped with a warning. No throughput at all is an error naming the files read.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.cost.training import check_price

log = logging.getLogger(__name__)

THROUGHPUT_KEYS = ("tokens_per_s", "train/tokens_per_s", "rollout/tokens_per_s")
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Throughput:
    key: str
    tokens_per_s: float
    source: str


def _usable(value: Any, key: str, where: str) -> float | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        log.warning("%s: ignoring %s=%r (expected a positive number)", where, key, value)
        return None
    return float(value)


def read_throughput(run_dir: str | Path) -> list[Throughput]:
    """The run's measured throughputs, one per key found, in THROUGHPUT_KEYS order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    metrics, summary = run_dir / METRICS_FILE, run_dir / SUMMARY_FILE
    if not metrics.exists() and not summary.exists():
        raise FileNotFoundError(f"{run_dir}: neither {METRICS_FILE} nor {SUMMARY_FILE} found")
    found: dict[str, Throughput] = {}
    if metrics.exists():
        for number, line in enumerate(metrics.read_text().splitlines(), 1):
            if not line.strip():
                continue
            where = f"{metrics}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: skipping a line that is not JSON", where)
                continue
            if not isinstance(record, dict):
                continue
            for key in THROUGHPUT_KEYS:
                if key in record and (value := _usable(record[key], key, where)) is not None:
                    found[key] = Throughput(key, value, where)
    if summary.exists():
        try:
            record = json.loads(summary.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{summary}: not valid JSON ({err})") from err
        if isinstance(record, dict):
            for key in THROUGHPUT_KEYS:
                if key in record and (value := _usable(record[key], key, str(summary))) is not None:
                    found[key] = Throughput(key, value, str(summary))
    if not found:
        read = " and ".join(str(f) for f in (metrics, summary) if f.exists())
        raise ValueError(f"{read}: no throughput found (expected a key among {', '.join(THROUGHPUT_KEYS)})")
    return [found[k] for k in THROUGHPUT_KEYS if k in found]


def cost_per_million_tokens(tokens_per_s: float, price_per_hour: float) -> float:
    """Dollars per 1M tokens for a machine rented at `price_per_hour` producing `tokens_per_s`."""
    if isinstance(tokens_per_s, bool) or not math.isfinite(tokens_per_s) or tokens_per_s <= 0:
        raise ValueError(f"tokens_per_s={tokens_per_s!r}: expected a positive number")
    check_price(price_per_hour)
    return price_per_hour / (tokens_per_s * 3600) * 1e6
