"""A second Ctrl-C ends the driver at once, and still records `interrupted` (two quick Ctrl-Cs
once left a study that said it was running)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from study.run.lifecycle import Interrupted, Lifecycle, signals_stop

    life = Lifecycle()
    life.on_second = lambda reason: open(sys.argv[1], "w").write(json.dumps(reason))
    with signals_stop(life):
        life.enter("decoding")
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except Interrupted:
            os.kill(os.getpid(), signal.SIGINT)  # before the first one's status is written
    print("not reached")
    """
)


def test_second_sigint_records_interrupted_then_exits_130(tmp_path: Path) -> None:
    record = tmp_path / "reason.json"
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(record)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 130, p.stderr
    assert "not reached" not in p.stdout and "Traceback" not in p.stderr
    assert json.loads(record.read_text()) == "second SIGINT during decoding: ended at once"
    assert p.stderr.strip().splitlines() == [
        "interrupted: second SIGINT during decoding: ended at once"
    ]
