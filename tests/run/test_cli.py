"""The command line follows convention: `study --help`/`--version` exit 0 and list the commands,
usage lines name the command as it was called, every option has help, `--help` and `--list`
import neither torch nor Ray, and `--set KEY=VALUE` changes a space's settings (recorded in
study.json; an unknown key or a contradiction of a resumed study is one error line)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import asdict

import pandas as pd
import pytest
import ray
from conftest import REPO, tree_snapshot

import study
from study import cli
from study.run import __main__ as run
from study.run import overrides
from study.spaces.loader import load_space


def _study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_study_help_and_version_exit_0_and_list_every_command() -> None:
    h = _study("--help")
    assert h.returncode == 0, h.stderr
    for name, (_, summary) in cli.COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(summary)}$", h.stdout, re.M), name
    v = _study("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"study {study.__version__}"
    bad = _study("nope")
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


# what `--help` and `--list` may import: nothing heavy (measured as modules, not seconds)
PROBE = """
import json, runpy, sys
sys.argv = ["study", *sys.argv[1:]]
try:
    runpy.run_module("study.cli", run_name="__main__")
except SystemExit as e:
    code = e.code
heavy = ("torch", "ray", "pandas", "optuna", "plotly")
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--help"], []),
        (["run", "--help"], []),
        (["run", "--list"], ["optuna"]),  # loading a space file defines its Optuna space
        (["data", "--help"], ["pandas"]),  # study.data: the Parquet data sets
        (["data", "prepare", "--help"], ["pandas"]),
        (["evaluate", "--help"], []),
        (["models", "--help"], []),
        (["models", "--list"], []),  # names, descriptions, options: the torch-free registry
    ],
)
def test_help_and_list_import_neither_torch_nor_ray(args, allowed) -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    probe = json.loads(r.stdout.splitlines()[-1])
    assert probe["code"] in (0, None) and set(probe["heavy"]) <= set(allowed), probe


# the same, run as `python -m MODULE ...` (the module's own __main__, not study.cli)
MODULE_PROBE = """
import json, runpy, sys
module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
heavy = ("torch", "timm", "ray", "pandas", "optuna", "plotly")
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["study.evaluate", "--help"],
        ["study.models", "--help"],
        ["study.models", "--list"],
        ["study.models", "--list", "vanilla_cnn", "googlenet_extra"],
    ],
)
def test_module_help_and_list_import_no_torch(args) -> None:
    r = subprocess.run(
        [sys.executable, "-c", MODULE_PROBE, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    probe = json.loads(r.stdout.splitlines()[-1])
    assert probe == {"code": 0, "heavy": []}, (probe, r.stderr[-2000:])
    if "--list" in args:  # each model's name, description and default options
        assert "vanilla_cnn: plain CNN baseline" in r.stdout and "depth=4" in r.stdout, r.stdout


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_usage_names_the_command_as_called(name, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: study {name} ")
    module = __import__(cli.COMMANDS[name][0], fromlist=["main"])
    with pytest.raises(SystemExit):
        module.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m {cli.COMMANDS[name][0].removesuffix('.__main__')} ")


class _Parsed(Exception):
    pass


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:  # argparse keeps its options here (stable since 3.2)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_option_has_help(name, monkeypatch) -> None:
    def grab(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    module = __import__(cli.COMMANDS[name][0], fromlist=["main"])
    with pytest.raises(_Parsed) as e:
        module.main([])
    missing = [
        f"{p.prog}: {'/'.join(a.option_strings) or a.dest}"
        for p in _parsers(e.value.args[0])
        for a in p._actions
        if not a.help and not isinstance(a, argparse._SubParsersAction)
    ]
    assert missing == []


def test_set_changes_settings_of_the_space() -> None:
    a = run.parse_args(
        ["--space", "demo", "--set", "image_size=64", "--set", "sampler=random",
         "--set", "grace_period=5", "--set", "roles={\"lr\": \"scientific\"}", "--max-epochs", "6"]
    )  # fmt: skip
    settings = overrides.resolve(a, load_space("demo"))[0]
    assert (settings.image_size, settings.sampler, settings.max_epochs) == (64, "random", 6)
    assert settings.grace_period == 5  # named by --set: not pulled down to --max-epochs
    assert settings.roles == {"lr": "scientific"}


BAD_SETS = [
    (["--set", "bogus=1"], ["--set bogus=1: unknown key 'bogus'", "sampler", "image_size"]),
    (["--set", "image_size"], ["--set image_size: expected KEY=VALUE", "valid keys"]),
    (["--set", "image_size=big"], ["--set image_size=big: expected an integer"]),
    (["--set", "sampler=bogus"], ["--set sampler=bogus", "expected one of tpe, random"]),
    (["--set", "roles=[1]"], ["--set roles=[1]: expected a JSON object"]),
    (["--set", "num_samples=3", "--num-samples", "4"], ["num_samples=3 contradicts --num-samples"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_SETS)
def test_a_bad_set_is_one_error_line_before_ray(args, words, tmp_path, capsys) -> None:
    base = ["--space", "demo", "--storage", str(tmp_path / "s"), "--name", "x", "--no-report"]
    before = tree_snapshot(tmp_path)
    assert run.main([*base, *args]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), errors
    assert not ray.is_initialized() and tree_snapshot(tmp_path) == before


def test_resume_refuses_a_set_that_contradicts_the_study(tmp_path, capsys) -> None:
    settings = overrides.resolve(run.parse_args(["--space", "demo"]), load_space("demo"))[0]
    sd = tmp_path / "s" / "x"
    sd.mkdir(parents=True)
    meta = {"name": "x", "space": "demo", "seed": 0, "dataset": {"data_dir": str(tmp_path)}}
    meta["settings"] = {**asdict(settings), "max_concurrent": None, "smoke_test": False}
    (sd / "study.json").write_text(json.dumps(meta))
    base = ["--resume", "--storage", str(tmp_path / "s"), "--name", "x", "--no-report"]
    other = settings.image_size // 2  # any size the study was not started with
    assert run.main([*base, "--set", f"image_size={other}"]) == 2
    err = capsys.readouterr().err
    assert f"--set image_size={other} contradicts" in err
    assert f"image_size={settings.image_size}" in err


def test_set_is_recorded_in_study_json(toon_dir, tmp_path, monkeypatch) -> None:
    """The run stops at its tuner (no Ray cluster): study.json holds the changed settings."""
    monkeypatch.setattr(ray, "init", lambda **_: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})

    def stop(**_):
        raise RuntimeError("stop here")

    monkeypatch.setattr("study.run.driver.build_tuner", stop)
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(toon_dir), "--storage",
            str(tmp_path / "s"), "--name", "x", "--no-report", "--set", "image_size=40",
            "--set", "top_k=2"]  # fmt: skip
    with pytest.raises(RuntimeError, match="stop here"):
        run.main(args)
    meta = json.loads((tmp_path / "s" / "x" / "study.json").read_text())
    assert meta["set"] == {"image_size": 40, "top_k": 2}
    assert (meta["settings"]["image_size"], meta["settings"]["top_k"]) == (40, 2)
    assert "--set image_size=40" in meta["command"]


def test_prepare_shows_progress_and_names_near_duplicates(tmp_path, capsys) -> None:
    from study.data import prepare
    from study.data.__main__ import main as data_main
    from study.data.prepare import summarise

    seen = []
    prepare("toon", source="tiny", data_dir=tmp_path, seed=0, progress=lambda *a: seen.append(a))
    total = seen[-1][2]
    assert ("read", 1, None) in seen and seen[-1] == ("decoded", total, total) and total > 0
    assert data_main(["prepare", "toon", "--source", "tiny", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out  # the last line of each phase is always printed
    assert f"prepare toon: decoded {total:,} / {total:,} files" in out
    manifest = json.loads((tmp_path / "toon" / "manifest.json").read_text())
    near = {"dhash": "0", "paths": ["a/1.png", "b/2.png"], "splits": ["test", "train"]}
    near["split_of"] = {"a/1.png": "train", "b/2.png": "test"}
    manifest["near_duplicates"] = [near]
    table = pd.DataFrame({"label": ["joy", "joy"], "split": ["train", "test"]})
    assert "  a/1.png (train) ~ b/2.png (test)" in summarise(manifest, table).splitlines()


def test_the_heavy_commands_exit_without_collecting_their_objects() -> None:
    """A command's objects are frozen before the interpreter exits (its last garbage collections,
    seconds after a study, skip them); its exit code is kept."""
    import gc

    try:
        assert cli.leaving(3) == 3 and cli.leaving(None) == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    for module in ("study/run/__main__.py", "study/evaluate.py", "study/report/__main__.py"):
        assert "sys.exit(leaving(main()))" in (REPO / module).read_text(), module
