"""An append-only JSONL file of an endpoint evaluation's finished samples, so a run can resume.

Design choices:
- The first line holds the settings that decide what a sample is (model, sampling, template, seed,
  stop strings); every other line is one finished sample under a key (family, problem, language,
  sample index). A rerun with the same settings skips the keys already there; with other settings
  it is refused, naming the differences, rather than mixing two experiments in one report. k, the
  task list and the greedy flag are not part of them: asking for more samples or more families
  reuses what is there.
- Each line is written and flushed as its request finishes (under a lock: requests finish on many
  threads), so a killed run loses at most the requests in flight. A last line cut by the kill is
  dropped when the file is reopened.
- Raw completions are stored, not scores: the report is recomputed from the file, so a scorer fix
  needs no new requests.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ResultLog:
    """Finished samples by key, loaded from `path` and extended with `append`."""

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.resumed = self._load()
        self._file = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size == 0:
            self._write({"settings": settings})

    def _load(self) -> int:
        """Read what a previous run finished; returns how many samples it holds."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return 0
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) < len(raw):
            log.warning("%s: dropping a last line cut short by an interrupted run", self.path)
            self.path.write_bytes(complete)
        lines = complete.decode("utf-8").splitlines()
        if not lines:
            return 0
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}:1: invalid JSON ({err.msg}); expected a results file") from err
        if not isinstance(header, dict) or "settings" not in header:
            raise ValueError(f"{self.path}:1: expected a {{'settings': ...}} header line; not a results file")
        if header["settings"] != self.settings:
            changed = sorted(
                name
                for name in set(header["settings"]) | set(self.settings)
                if header["settings"].get(name) != self.settings.get(name)
            )
            detail = ", ".join(
                f"{n}: {header['settings'].get(n)!r} there, {self.settings.get(n)!r} now" for n in changed
            )
            raise ValueError(
                f"{self.path} holds results of other settings ({detail}); "
                "use another results file or the same settings"
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.path}:{number}: invalid JSON ({err.msg})") from err
            self.records[record["key"]] = record
        log.info("%s: resuming with %d finished samples", self.path, len(self.records))
        return len(self.records)

    def _write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        """Store one finished sample (it must carry its `key`)."""
        with self._lock:
            self.records[record["key"]] = record
            self._write(record)

    def close(self) -> None:
        self._file.close()
