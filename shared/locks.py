"""A lock between the processes of one machine: an exclusive ``flock`` on a file.

For what processes sharing a folder must do one at a time (building a reference index,
migrating a SQLite file); the lock goes with the process, so a process that dies frees it.
Locks between replicas on different machines are database leases (``shared.database``).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusively(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder, if missing) while the
    block runs; another process asking for it waits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
