"""Atomic directories and files: a checkpoint (or an output file) is either complete or absent.

Design choices:
- Everything is written into a hidden sibling (`.NAME.tmp-PID`), fsync'ed, then renamed into place, so
  a run killed at any instant (SIGKILL included) leaves its previous checkpoint untouched.
- Replacing an existing directory renames the old one aside first and removes it only after the new one
  is in place; a crash between the two renames leaves `.NAME.old`, which `atomic_directory` clears.
- A single file (eval reports, rejection-sampled traces) goes to a hidden sibling, is fsync'ed, then
  renamed over the target with `os.replace`, which is atomic on POSIX.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on a clean exit it becomes `final` (replacing it), else it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomically(final: str | Path, text: str) -> None:
    """Write `text` to `final` through a fsync'ed temporary sibling and one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
