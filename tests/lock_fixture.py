"""Driver locks as other drivers leave them, for tests/results/test_lock.py and
tests/run/test_run_lock.py (issue #27)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from study import storage as st
from study.results.lock import LOCK, iso


def write_lock(study_dir: Path | str, **changes) -> dict:
    """A lock as another driver would have written it (this host, this process unless changed)."""
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": iso(time.time()),
        "command": "python -m study.run --name x",
        "token": "theirs",
        **changes,
    }
    st.write_text(st.join(str(study_dir), LOCK), json.dumps(holder))
    return holder


def finished_pid() -> int:
    """The pid of a process that has ended (and was reaped): nobody's."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(p.stdout)
