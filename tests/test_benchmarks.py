"""The benchmarks run and print their tables (no timed asserts: speeds depend on the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from study.data import open_dataset, prepare

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is scripts, not an installed package
from benchmarks import _util, gpu_check, harness  # noqa: E402
from benchmarks.decode_once import count_decodes  # noqa: E402

# the GPU machine has none of these: gpu_check must work without them
BLOCK_IMPORTS = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"ray", "optuna", "plotly"}:
            raise ModuleNotFoundError(f"{name} is blocked: the GPU machine does not have it")
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def toon_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


@pytest.mark.timeout(360)  # gpu_check.sh --cpu stops itself at 240 + 30 s, then 300
def test_gpu_check_cpu_mode_runs_every_phase_without_ray(tmp_path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_IMPORTS)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for phase in ("googlenet224", "ferg_epoch", "packing", "pipeline"):
        assert f"SUMMARY phase {phase}: ok" in out
    assert "SUMMARY phase compile: skipped" in out
    summary = dict(
        line[len("SUMMARY ") :].split(": ", 1)
        for line in out.splitlines()
        if line.startswith("SUMMARY ")
    )
    for key in (
        "googlenet64 (a) img/s",
        "googlenet64 (a)/(b)",
        "ferg epoch s",
        "packing 2 vs 1",
        "packing per-trial RSS MiB",
        "vanilla_cnn32 (a)/(b)",
    ):
        assert float(summary[key].replace(",", "")) > 0, key
    assert "goal" not in out  # the GPU goals are not judged on CPU numbers


def test_gpu_check_refuses_to_pretend_a_cpu_is_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main([]) == 2


@pytest.mark.timeout(360)  # its subprocess is killed at 300 s
def test_pipeline_prints_one_row_per_cell_with_consistent_ratios(toon_dir, tmp_path) -> None:
    out_json = tmp_path / "rows.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "pipeline.py"),
            "--models",
            "vanilla_cnn",
            "--sizes",
            "32",
            "40",
            "--batch-size",
            "4",
            "--batches",
            "2",
            "--threads",
            "1",
            "--workers",
            "0",
            "--png-size",
            "48",
            "--toon-size",
            "tiny",
            "--data-dir",
            str(toon_dir),
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out_json.read_text())
    assert [(r["model"], r["px"]) for r in rows] == [("vanilla_cnn", 32), ("vanilla_cnn", 40)]
    for r in rows:
        for col in ("(a) trainable", "(b) in-memory", "(c) naive PNG", "RSS MiB (a)"):
            assert r[col] > 0, col
        assert r["(a)/(b)"] == pytest.approx(r["(a) trainable"] / r["(b) in-memory"])
        assert r["(a)/(c)"] == pytest.approx(r["(a) trainable"] / r["(c) naive PNG"])
        # (a) includes the reporting time, the trainable's own images_per_s does not
        assert r["(a) trainable"] <= r["train_epoch img/s"]
        assert r["report s/epoch"] > 0
    header = next(line for line in proc.stdout.splitlines() if "(a)/(b)" in line)
    assert "(a)/(c)" in header and "(c) naive PNG" in header


def test_epoch_rates_leave_out_warm_up_and_validation() -> None:
    reports = [
        {"_start": True, "_time": 0.0},
        {"epoch": 1, "images_per_s": 10.0, "epoch_s": 12.0, "_time": 13.0},
        {"epoch": 2, "images_per_s": 50.0, "epoch_s": 3.0, "_time": 16.5},
    ]
    r = harness.epoch_rates(reports, n_train=100)
    # epoch 2: 2 s training, 1 s validation, 0.5 s between the end of the epoch and its report
    assert r["train_img_s"] == pytest.approx(50.0)
    assert r["report_s"] == pytest.approx(0.5)
    assert r["img_s"] == pytest.approx(100 / 2.5)
    with pytest.raises(ValueError, match="warm-up"):
        harness.epoch_rates(reports[:2], n_train=100)


def test_lite_cpu_speed_prints_one_row_per_model_and_size(capsys) -> None:
    """benchmarks/lite_cpu_speed.py at its smallest: MobileNet x0.25 (ImageNet weights) at 32 px."""
    from benchmarks import lite_cpu_speed

    args = [
        "--models",
        "mobilenet_v1_025",
        "--sizes",
        "32",
        "40",
        "--images",
        "4",
        "--repeats",
        "1",
    ]
    assert lite_cpu_speed.main(args) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [r for r in rows if r[:1] == ["mobilenet_v1_025"] and r[2] != "px:"]  # the table
    assert [r[1] for r in rows] == ["32", "40"]
    for r in rows:  # px, channels_last, then five positive rates and costs
        assert r[2] == "False" and all(float(v.replace(",", "")) > 0 for v in r[3:])


def test_inline_trial_copies_checkpoints_and_stops_without_ray(tmp_path) -> None:
    before = sys.modules.get("ray")
    storage = tmp_path / "storage"
    storage.mkdir()
    config = harness.trial_config("vanilla_cnn", 32, 4, 1, 0.0, epochs=3, width=4, depth=2)
    data = harness.TrialData(
        harness.synthetic_split(8, 32), harness.synthetic_split(4, 32, 1), list("0123456")
    )
    reports = harness.inline_trial(config, data, storage, stop=lambda reports: len(reports) >= 3)
    assert [r.get("epoch") for r in reports] == [None, 1, 2]  # stopped before epoch 3
    assert sorted(p.name for p in storage.iterdir()) == ["checkpoint_000001", "checkpoint_000002"]
    assert (storage / "checkpoint_000001" / "last.pt").stat().st_size > 0
    assert sys.modules.get("ray") is before


def test_nvidia_smi_lines_are_parsed_and_noise_is_skipped() -> None:
    assert gpu_check.parse_smi_line("87, 40321\n") == (87.0, 40321.0)
    assert gpu_check.parse_smi_line("[N/A], 100") is None
    assert gpu_check.parse_smi_line("No devices were found") is None


def test_decode_counter_logs_every_decode_in_a_fresh_process(tmp_path) -> None:
    """The sitecustomize hook that decode_once.py puts into every process of a study."""
    toon_dir = tmp_path / "data"  # its own: a cache another test wrote would hide decodes
    prepare("toon", source="tiny", data_dir=toon_dir, seed=0)
    log = tmp_path / "decodes.jsonl"
    env = {**os.environ, **_util.decode_counter_env(tmp_path / "site", log)}
    script = textwrap.dedent(f"""
        from study.data import load_split, open_dataset
        ds = open_dataset({str(toon_dir)!r}, "toon")
        for _ in range(2):  # the second load reads the cache: no decode
            arr = load_split(ds, "val", 40)
        print(len(arr.labels))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) == int(proc.stdout.strip()) > 0
    meta = open_dataset(toon_dir, "toon").table()
    val = set(meta.loc[meta["split"] == "val", "sha256"])
    assert {r["sha256"] for r in recs} == val
    rows = count_decodes(log, recs[0]["pid"], dict(zip(meta["sha256"], meta["split"], strict=True)))
    by_split = {r["split"]: r for r in rows}
    assert by_split["val"]["decodes/images"] == 1.0 and by_split["val"]["in driver"] == len(val)
    assert by_split["train"]["decodes"] == 0 and by_split["all"]["decodes"] == len(val)


def test_count_decodes_tells_driver_trials_and_evaluation_apart(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    recs = [
        {"pid": 1, "process": "python", "sha256": "a"},
        {"pid": 1, "process": "python", "sha256": "b"},
        {"pid": 7, "process": "ray::ImplicitFunc.train", "sha256": "a"},
        {"pid": 8, "process": "ray::evaluate_on_test", "sha256": "c"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows = {r["split"]: r for r in count_decodes(log, 1, {"a": "train", "b": "val", "c": "test"})}
    assert rows["train"]["decodes"] == 2 and rows["train"]["in trials"] == 1
    assert rows["train"]["decodes/images"] == 2.0
    assert rows["test"]["elsewhere"] == "ray::evaluate_on_test: 1"
    assert rows["all"]["decodes"] == 4 and rows["all"]["processes"] == 3


def test_proc_peak_sampler_sees_a_child_grow(tmp_path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = b'x' * (300 * 2**20); time.sleep(1.5)"]
    )
    with _util.ProcPeakSampler(child.pid, every_s=0.1) as sampler:
        child.wait(timeout=60)
        time.sleep(0.1)
    assert sampler.peak() >= 300
    assert sampler.peak("ray::") != sampler.peak("ray::")  # NaN: no Ray process descends from it


def test_early_stopping_summary_spreads_ratios_and_the_compass_verdict() -> None:
    """asha_vs_fifo's side-by-side summary: mean (min-max) over seeds, the epochs and test-acc
    ratios, and the compass verdict only where one variant trains every epoch (not for
    pruned_vs_stock, whose two variants both stop trials with ASHA)."""
    from benchmarks.asha_vs_fifo import compare

    def row(variant: str, seed: int, epochs: int, test: float) -> dict:
        keys = ("epochs", "wall_s", "best_val", "test_of_best", "best_test")
        values = (epochs, 10.0, test, test, test)
        return {"variant": variant, "seed": seed} | dict(zip(keys, values, strict=True))

    rows = [row("fifo", 0, 100, 0.80), row("asha", 0, 30, 0.795), row("fifo", 1, 100, 0.82),
            row("asha", 1, 40, 0.801)]  # fmt: skip
    summary, lines = compare(rows, "fifo")
    epochs = next(r for r in summary if r[""] == "epochs trained")
    assert epochs["asha"] == "35.000 (30.000-40.000)" and epochs["fifo"] == "100 (100-100)"
    assert lines[0] == (
        "asha / fifo: epochs 0.35, wall 1.00, test acc of the best trial 0.798 vs 0.810 "
        "(-1.2 points)"
    )
    assert lines[1].endswith("of its epochs): not met")  # 1.2 points behind
    rows[1]["test_of_best"] = 0.81
    assert compare(rows, "fifo")[1][1].endswith("of its epochs): met")
    assert len(compare(rows, "fifo", compass=False)[1]) == 1


def _acct_record(pid: int, ppid: int, start: int, ticks: int, comm: bytes) -> bytes:
    from benchmarks.suite_cpu import ACCT_V3

    # utime = ticks (below 2**13: a comp_t with exponent 0), stime as a comp_t with exponent 1
    return ACCT_V3.pack(0, 3, 0, 0, 0, 0, pid, ppid, start, 0.0, ticks, 1 << 13 | 2, 0, 0, 0, 0,
                        0, 0, comm)  # fmt: skip


def test_suite_cpu_charges_each_process_to_the_test_its_worker_ran() -> None:
    """benchmarks/suite_cpu.py: acct_v3 records decoded (comp_t times), and a grandchild (a Ray
    worker under a head) charged to the test running on its pytest worker when it began."""
    from benchmarks.suite_cpu import TestRun, attribute, by_name, comp_t, parse_acct

    assert comp_t(1 << 13 | 2) == 16 and comp_t(100) == 100
    data = b"".join(
        [
            _acct_record(10, 1, 1000, 100, b"python"),  # a pytest worker: its own CPU is not here
            _acct_record(20, 10, 1001, 200, b"raylet"),  # started during test a
            _acct_record(21, 20, 1010, 300, b"ray::ImplicitFu"),  # its worker, during test b
            _acct_record(30, 10, 1030, 50, b"python"),  # after both tests
            _acct_record(40, 2, 1005, 70, b"chromium"),  # not under a pytest worker
        ]
    )
    procs = parse_acct(data)
    assert [p.comm for p in procs][2] == "ray::ImplicitFu"  # the kernel keeps 15 characters
    assert procs[1].cpu_s == pytest.approx(2.16)  # (200 + 16) ticks of 1/100 s
    tests = [TestRun(10, "a", 1000.5, 1008.0, 1.0), TestRun(10, "b", 1008.0, 1020.0, 2.0)]
    children, lost = attribute(procs, tests)
    assert children == pytest.approx({"a": 2.16, "b": 3.16})
    assert lost == pytest.approx(0.66 + 0.86)
    named = [(name, round(cpu, 2), n) for name, cpu, n in by_name(procs, {10})]
    assert named == [("ray::ImplicitFu", 3.16, 1), ("raylet", 2.16, 1), ("chromium", 0.86, 1),
                     ("python", 0.66, 1)]  # fmt: skip
    assert ("python", 1.82, 2) in [(a, round(b, 2), c) for a, b, c in by_name(procs, set())]
    with pytest.raises(ValueError, match="acct version 2"):
        parse_acct(data[:1] + b"\x02" + data[2:64])
    with pytest.raises(ValueError, match="not whole 64-byte"):
        parse_acct(data[:70])
