"""`ray job submit` on a hand-started Ray head (no `ray up`, no file_mounts), and
`--optuna-storage`: a live Optuna study that another process reads while the run goes on."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import REPO, tree_snapshot
from ray_head import HEAD_START_S, Head
from ray_head import ray_head as start_head

from study.results.tables import read_json
from study.run import __main__ as run
from study.storage import redact
from study.tuning.optuna_storage import open_optuna_storage

RUNTIME_ENV = REPO / "deploy" / "runtime_env.yaml"


@pytest.fixture(scope="module")
def tiny_toon(tmp_path_factory) -> Path:
    from study.data import prepare

    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


# --- --optuna-storage: checked before Ray starts -----------------------------------------------


def test_redact_hides_a_database_password() -> None:
    assert redact("postgresql://study:s3cret@db:5432/optuna") == "postgresql://***@db:5432/optuna"
    assert redact("journal:///shared/optuna.log") == "journal:///shared/optuna.log"
    assert redact("sqlite:////tmp/x/optuna.db") == "sqlite:////tmp/x/optuna.db"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("journal://shared/optuna.log", "journal:///ABSOLUTE/PATH.log"),  # a relative path
        ("journal:///no/such/dir/optuna.log", "directory /no/such/dir does not exist"),
        ("s3://bucket/optuna.db", "expected an RDB URL"),
        ("not a url", "expected an RDB URL"),
        # a wrong port (or a missing driver): the database is not there, said now, no password
        ("postgresql://study:s3cret@127.0.0.1:1/optuna", "postgresql://***@127.0.0.1:1"),
    ],
)
def test_bad_optuna_storage_fails_before_ray_starts(
    url: str, words: str, tiny_toon: Path, tmp_path: Path, capsys
) -> None:
    before = tree_snapshot(tmp_path)
    rc = run.main(
        [
            "--space",
            "demo",
            "--smoke-test",
            "--data-dir",
            str(tiny_toon),
            "--storage",
            str(tmp_path / "s"),
            "--name",
            "x",
            "--optuna-storage",
            url,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: --optuna-storage ") and words in err, err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err
    assert tree_snapshot(tmp_path) == before  # no study directory, no journal file


def test_a_name_already_in_a_shared_storage_is_refused(tiny_toon: Path, tmp_path: Path, capsys):
    """Ray's searcher loads an existing study of the same name: a new study would silently
    continue someone else's trials in a shared database."""
    url = f"journal://{tmp_path}/shared.log"
    optuna.create_study(storage=open_optuna_storage(url), study_name="taken")
    rc = run.main(
        [
            "--space",
            "demo",
            "--smoke-test",
            "--data-dir",
            str(tiny_toon),
            "--storage",
            str(tmp_path / "s"),
            "--name",
            "taken",
            "--optuna-storage",
            url,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "already holds a study named 'taken'" in err, err
    assert not (tmp_path / "s").exists()


def test_a_file_that_is_not_an_optuna_journal_is_left_alone(
    tiny_toon: Path, tmp_path: Path, capsys
) -> None:
    """Optuna's journal appends to whatever file it is given: a mistyped path to one of your
    files must not get a study appended to it."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    before = tree_snapshot(tmp_path)
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(tiny_toon)]
    rc = run.main(
        [*args, "--storage", str(tmp_path / "s"), "--optuna-storage", f"journal://{notes}"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"{notes} exists and is not an Optuna journal" in err, err
    assert tree_snapshot(tmp_path) == before


# --- a Ray head started by hand, as the README's "any Ray cluster" section does ----------------


@pytest.fixture
def ray_head() -> Iterator[Head]:
    pytest.importorskip("aiohttp", reason="needs ray[default] (pip install -e '.[cluster]')")
    try:
        with start_head(dashboard=True) as head:
            yield head
    except RuntimeError as e:  # `ray start` failed: its log
        pytest.fail(str(e))


# the job's two submissions share one budget; the test's limit adds the head's start (its
# fixture) and its stop, so a slow machine fails a step (TimeoutExpired, an assert), never hangs
JOB_BUDGET_S = 300


@pytest.mark.study
@pytest.mark.timeout(HEAD_START_S + JOB_BUDGET_S + 30)
def test_job_submit_runs_a_study_that_optuna_readers_watch_live(
    ray_head: Head, tiny_toon: Path, tmp_path: Path
) -> None:
    """The README's command: `ray job submit --working-dir . --runtime-env deploy/runtime_env.yaml
    -- python -m study.run ... --address auto`. The code travels with the job; the study goes to
    --storage; its Optuna journal is read by this (another) process while the job runs."""
    budget_end = time.time() + JOB_BUDGET_S
    storage, journal = tmp_path / "studies", tmp_path / "optuna.log"
    url = f"journal://{journal}"  # journal:///tmp/...
    study_args = [
        "--space",
        "demo",
        "--smoke-test",
        "--address",
        "auto",
        "--name",
        "jobsmoke",
        "--data-dir",
        str(tiny_toon),
        "--storage",
        str(storage),
        "--no-report",
        "--optuna-storage",
        url,
    ]
    submit = [
        "ray",
        "job",
        "submit",
        "--address",
        ray_head.dashboard,
        "--working-dir",
        str(REPO),
        "--runtime-env",
        str(RUNTIME_ENV),
        "--",
    ]
    # one job (each submission starts a job driver and unpacks the working dir: seconds): it
    # first prints where `study` is imported from, the uploaded checkout, not a copy of the
    # project installed on the node; then runs the study from there
    where = "python -c 'import study; print(\"STUDY_FROM\", study.__file__)'"
    command = f"{where} && {shlex.join(['python', '-m', 'study.run', *study_args])}"
    log = tmp_path / "job.log"  # a file, not a pipe: nobody reads a pipe while we poll
    with log.open("w") as out:
        job = subprocess.Popen(
            [*submit, "bash", "-c", command],
            env=ray_head.env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seen_while_running: list[int] = []
    deadline = budget_end
    while job.poll() is None and time.time() < deadline:
        if journal.exists():  # what optuna-dashboard does: open the storage, load the study
            try:
                trials = optuna.load_study(
                    study_name="jobsmoke", storage=open_optuna_storage(url)
                ).trials
            except KeyError:  # the journal exists before the study is created in it
                trials = []
            if trials and job.poll() is None:
                seen_while_running.append(len(trials))
        time.sleep(0.5)
    job.wait(timeout=max(1.0, deadline - time.time()))
    assert job.returncode == 0, log.read_text()[-4000:]
    found = [line for line in log.read_text().splitlines() if line.startswith("STUDY_FROM ")]
    assert len(found) == 1, log.read_text()[-3000:]
    assert "/runtime_resources/working_dir_files/" in found[0], found[0]
    assert f"{ray_head.temp_dir}/r/session_" in found[0]
    assert seen_while_running and max(seen_while_running) >= 1, "no trial seen during the run"

    sd = storage / "jobsmoke"
    trials = pd.read_parquet(sd / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) <= {"finished", "stopped"}
    assert trials["test_acc"].notna().any()  # the final evaluation ran in the job as well
    assert read_json(str(sd / "study.json"))["optuna_storage"] == url
    assert not (sd / "optuna.db").exists()  # the study lives in the journal only
    final = optuna.load_study(study_name="jobsmoke", storage=open_optuna_storage(url))
    states = {t.state for t in final.trials}
    assert len(final.trials) == 2 and states <= {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    }
    assert {t.user_attrs["ray_trial_id"] for t in final.trials} == set(trials["trial_id"])
