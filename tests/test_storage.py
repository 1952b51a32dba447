"""Shared storage: studies and data sets on s3:// (a moto S3 server on 127.0.0.1), and decode once
per node, counted across every process of a real study."""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from ray_head import free_port
from study_process import popen_study

from benchmarks import _util
from study import storage

BUCKET = "study-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def test_local_paths_and_file_uris_are_local(tmp_path: Path) -> None:
    assert not storage.is_remote(tmp_path) and not storage.is_remote(f"file://{tmp_path}")
    assert storage.is_remote("s3://b/x") and storage.is_remote("gs://b/x")
    assert storage.join(f"file://{tmp_path}", "a", "b.txt") == str(tmp_path.resolve() / "a/b.txt")
    target = storage.join(tmp_path, "a", "b.txt")
    storage.write_text(target, "one")
    storage.write_text(target, "two")  # replaced, and no temporary file left behind
    assert storage.read_text(target) == "two" and os.listdir(tmp_path / "a") == ["b.txt"]
    assert storage.list_dirs(tmp_path) == ["a"] and storage.list_dirs(tmp_path / "none") == []


def test_join_keeps_a_uris_query_at_the_end() -> None:
    base = "s3://bucket/studies?endpoint_override=http://127.0.0.1:9000&scheme=http"
    assert storage.join(base, "s1", "trials.parquet") == (
        "s3://bucket/studies/s1/trials.parquet?endpoint_override=http://127.0.0.1:9000&scheme=http"
    )
    assert storage.basename(storage.join(base, "s1")) == "s1"


# --- an S3-compatible server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> dict[str, str]:
    """moto's S3 server on a free local port, a bucket in it, and the environment (credentials,
    AWS_ENDPOINT_URL) that pyarrow, Ray and boto3 read; set here and passed to subprocesses."""
    pytest.importorskip("moto.server", reason="needs moto[server] (pip install -e '.[test]')")
    boto3 = pytest.importorskip("boto3")
    port = free_port()  # below the ports that the tests' Rays draw (tests/ray_head.py)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            storage._filesystem.cache_clear()  # no client made for another endpoint
            yield env
    finally:
        storage._filesystem.cache_clear()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def s3_data(s3) -> str:
    """The toon 'tiny' set (84 images) prepared straight into the bucket."""
    from study.data import prepare

    data = f"s3://{BUCKET}/data"
    res = prepare("toon", source="tiny", data_dir=data, seed=0)
    assert res.out_dir == f"{data}/toon" and not res.reused
    return data


def test_s3_files_round_trip(s3) -> None:
    from study.results.tables import read_table, write_parquet

    root = f"s3://{BUCKET}/roundtrip"
    assert not storage.exists(root)
    write_parquet(pd.DataFrame({"a": [1, 2]}), storage.join(root, "t1", "x.parquet"))
    storage.write_text(storage.join(root, "t2", "y.json"), "{}")
    assert storage.list_dirs(root) == ["t1", "t2"] and storage.is_file(f"{root}/t2/y.json")
    assert read_table(storage.join(root, "t1"), "x.parquet")["a"].tolist() == [1, 2]
    assert read_table(root, "missing.parquet") is None


def test_remote_data_set_is_decoded_into_this_nodes_cache(s3_data, tmp_path, monkeypatch) -> None:
    from study.data import load_split, open_dataset, prepare, store

    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    again = prepare("toon", source="tiny", data_dir=s3_data, seed=0)
    assert again.reused  # same version found through the bucket's manifest
    ds = open_dataset(s3_data, "toon")
    assert ds.root == f"{s3_data}/toon" and ds.cache_dir == tmp_path / "cache" / "data" / "toon"
    before = store.DECODE_COUNT["images"]
    first = load_split(ds, "val", 32)
    second = load_split(ds, "val", 32)
    n_val = ds.manifest["counts"]["val"]
    assert store.DECODE_COUNT["images"] - before == len(first.labels) == n_val
    assert (first.images == second.images).all()
    # Ray pickles what trials share with protocol 5: an out-of-band buffer is what the object
    # store maps into each trial without a copy (an in-band np.memmap is copied per trial)
    buffers: list[pickle.PickleBuffer] = []
    pickle.dumps(first.images, protocol=5, buffer_callback=buffers.append)
    assert [b.raw().nbytes for b in buffers] == [first.images.nbytes]
    assert [p.name for p in ds.cache_dir.iterdir()] == [f"{ds.version}-32px-val.npy"]


def _smoke_args(data_dir: str, storage_uri: str, name: str) -> list[str]:
    """The demo smoke study with its data and results where the test says."""
    return [
        "--space",
        "demo",
        "--smoke-test",
        "--data-dir",
        data_dir,
        "--storage",
        storage_uri,
        "--name",
        name,
        "--no-report",
    ]


def test_missing_bucket_fails_before_ray_starts(s3_data, capsys) -> None:
    import ray

    from study.run import __main__ as run

    rc = run.main(_smoke_args(s3_data, "s3://no-such-bucket/studies", "x"))
    assert rc == 2 and "no-such-bucket" in capsys.readouterr().err
    assert not ray.is_initialized()


# --- a real study on s3:// ---------------------------------------------------------------------


# a smoke study on s3:// (moto) in a subprocess, killed past this (TimeoutExpired names it)
S3_STUDY_S = 240


def _study(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, int]:
    proc = popen_study(list(args), env)
    out, err = proc.communicate(timeout=S3_STUDY_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def _decodes(log: Path) -> list[tuple[int, str]]:
    recs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [(r["pid"], r["sha256"]) for r in recs]


@pytest.fixture(scope="module")
def s3_study(s3, s3_data, tmp_path_factory) -> dict:
    """A smoke study (2 trials x 2 epochs) with results, checkpoints and data on s3://, run by the
    CLI with every decode of every process logged."""
    tmp = tmp_path_factory.mktemp("s3study")
    env = {
        **os.environ,
        **s3,
        "STUDY_CACHE_DIR": str(tmp / "cache"),
        # every decode of every process (driver, Ray workers) is logged, as decode_once.py does
        **_util.decode_counter_env(tmp / "site", tmp / "decodes.jsonl"),
    }
    common = _smoke_args(s3_data, f"s3://{BUCKET}/studies", "smoke")
    r, pid = _study(env, *common)
    assert r.returncode == 0, r.stderr[-3000:]
    return {
        "env": env,
        "tmp": tmp,
        "args": common,
        "first_decodes": _decodes(tmp / "decodes.jsonl"),
        "driver_pid": pid,
        "study": f"s3://{BUCKET}/studies/smoke",
    }


@pytest.mark.study
@pytest.mark.timeout(S3_STUDY_S + 60)  # the fixture's study, moto's start, the checks
def test_each_image_is_decoded_once_per_node(s3_study, s3_data) -> None:
    """Train and val are decoded once by the driver before fit() (the trials share them through
    Ray's object store), test once by the evaluation (in the driver too: one local node, no GPU;
    study.evaluation.test_split.evaluates_here): every image of the set exactly once, by one
    process."""
    from study.data import open_dataset

    table = open_dataset(s3_data, "toon").table()
    decodes = s3_study["first_decodes"]
    assert Counter(sha for _, sha in decodes) == Counter(table["sha256"])
    split_of = dict(zip(table["sha256"], table["split"], strict=True))
    by_process = {
        split: {pid for pid, sha in decodes if split_of[sha] == split}
        for split in ("train", "val", "test")
    }
    assert all(pids == {s3_study["driver_pid"]} for pids in by_process.values()), by_process
    trials = storage.join(s3_study["study"], "trials.parquet")
    assert len(pd.read_parquet(io.BytesIO(storage.read_bytes(trials)))) == 2  # two trials ran


@pytest.mark.study
@pytest.mark.timeout(2 * S3_STUDY_S + 120 + 60)  # the fixture's study, its resume, the report
def test_study_on_s3_resumes_and_reports_from_there(s3_study, tmp_path, monkeypatch) -> None:
    import optuna

    from study.results.tables import read_json, read_table
    from study.tuning.optuna_storage import optuna_db

    study = s3_study["study"]
    trials = read_table(study, "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) <= {"finished", "stopped"}
    assert trials["test_acc"].notna().sum() == 1
    for tid in trials["trial_id"]:
        ckpts = [d for d in storage.list_dirs(storage.join(study, tid)) if d.startswith("checkp")]
        assert ckpts and storage.is_file(storage.join(study, tid, ckpts[-1], "best.pt"))
    for name in ("epochs.parquet", "predictions.parquet", "asha_rungs.parquet", "optuna.db"):
        assert storage.is_file(storage.join(study, name)), name
    assert not (REPO / "s3:").exists()  # no URI mistaken for a local path

    # resume as if on a machine that lost its local Optuna file: it comes back from the bucket
    monkeypatch.setenv("STUDY_CACHE_DIR", s3_study["env"]["STUDY_CACHE_DIR"])
    local_db = optuna_db(study)
    assert local_db.exists()
    local_db.unlink()
    log = s3_study["tmp"] / "decodes.jsonl"
    r, _ = _study(s3_study["env"], *s3_study["args"], "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _decodes(log) == s3_study["first_decodes"]  # this node's cache: nothing decoded again
    meta = read_json(storage.join(study, "study.json"))
    assert len(meta["resumed"]) == 1 and meta["finished"]
    after = read_table(study, "trials.parquet")
    assert sorted(after["trial_id"]) == sorted(trials["trial_id"])  # kept, not re-run
    ot = optuna.load_study(study_name="smoke", storage=f"sqlite:///{local_db}")
    assert {t.user_attrs["ray_trial_id"] for t in ot.trials} == set(trials["trial_id"])

    out = tmp_path / "report"
    rep = subprocess.run(
        [sys.executable, "-m", "study.report", study, "--out", str(out)],
        cwd=REPO,
        env=s3_study["env"],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (out / "index.html").read_text()
    assert all(tid in html for tid in trials["trial_id"])
