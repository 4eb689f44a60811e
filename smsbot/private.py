"""What smsbot writes to disk is readable by its owner only: the bundled Redis's directory (its
append-only file holds every subscriber's numbers, subscriptions and complaints), the daemon's and
the demo's logs.

`private_dir` makes a directory smsbot owns mode 0700 (tightening one an earlier version left
open); `open_private` opens a log for appending, created 0600. `PRIVATE_UMASK` is the umask of
what smsbot starts (the daemon, the bundled redis-server): files they create are 0600.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE_UMASK = 0o077


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path`, created if missing (missing parents too, each 0700), and made 0700."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(p, 0o700)
    return p


def open_private(path: str | os.PathLike[str]) -> IO[str]:
    """`path` opened for appending text, line-buffered; created 0600 (an existing file made 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
