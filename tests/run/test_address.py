"""Issue #27 item 7: a wrong --address is one line and exit code 2 within seconds, before Ray
starts (ray.init waited minutes on a dead port or a host name that does not resolve). Every
address here is on 127.0.0.0/8 or under .invalid, which never resolves: no traffic leaves."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import ray
from conftest import study_cli, tree_snapshot

from study.run import __main__ as run
from study.run.preflight import UsageError, check_address

# a behavioural bound from the issue (a loaded machine included), not a speed benchmark
BOUND_S = 30.0


def dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens at: bound, then let go."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fails_fast(address: str, data: Path, tmp_path: Path, capsys) -> str:
    """`python -m study.run --address ADDRESS` with a prepared data set (all else is right): exit
    2, one line, changing nothing, no Ray."""
    before = tree_snapshot(tmp_path)
    args = ["--space", "demo", "--smoke-test", "--address", address, "--data-dir", str(data)]
    t0 = time.monotonic()
    rc = run.main([*args, "--storage", str(tmp_path / "s"), "--reports", str(tmp_path / "r")])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 2, err
    assert took < BOUND_S, f"{took:.1f} s"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not ray.is_initialized()
    assert tree_snapshot(tmp_path) == before
    return lines[0]


def no_gcs_processes() -> frozenset[str]:
    """Ray's search for GCS processes on this machine, finding none."""
    return frozenset()


no_gcs_processes.cache_clear = lambda: None  # type: ignore[attr-defined]  # ray.init calls it


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_dead_port_fails_in_seconds(scheme: str, tiny_toon, tmp_path, capsys) -> None:
    address = f"{scheme}127.0.0.1:{dead_port()}"
    line = fails_fast(address, tiny_toon, tmp_path, capsys)
    assert f"--address {address}:" in line and "refused" in line, line


def test_unresolvable_host_fails_in_seconds(tiny_toon, tmp_path, capsys) -> None:
    line = fails_fast("no-such-host.invalid:6379", tiny_toon, tmp_path, capsys)
    assert "--address no-such-host.invalid:6379:" in line, line
    assert "cannot resolve host 'no-such-host.invalid'" in line, line


def test_auto_with_a_dead_recorded_cluster_fails_in_seconds(
    tiny_toon, tmp_path, capsys, monkeypatch
) -> None:
    """'auto' joins the address the last `ray start` recorded: a cluster that ended without
    `ray stop` left it behind, and ray.init waited minutes on it."""
    port = dead_port()
    temp = tmp_path / "raytmp"
    (temp / "ray").mkdir(parents=True)
    (temp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray's "auto" also takes any GCS process it sees on the machine (parallel tests' clusters)
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", no_gcs_processes)
    line = fails_fast("auto", tiny_toon, tmp_path, capsys)
    assert f"--address auto: Ray would join 127.0.0.1:{port}" in line and "refused" in line, line


@pytest.mark.parametrize(
    ("address", "words"),
    [("10.0.0.1", "expected HOST:PORT"), ("ray://h:port", "expected HOST:PORT")],
)
def test_malformed_address_is_refused_without_connecting(address: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        check_address(address)


@pytest.mark.study
def test_a_driver_without_auth_mode_is_told_why_the_cluster_refused_it(
    tiny_toon, tmp_path, shared_ray
) -> None:
    """A token, an address, RAY_AUTH_MODE unset (how CI's environment was): Ray sends no token to
    an address it is given, the cluster refuses the driver after its tries, and the error names
    the variable. (With RAY_AUTH_MODE=token the same driver joins: every study on shared_ray.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {
        "RAY_AUTH_TOKEN_PATH": shared_ray["RAY_AUTH_TOKEN_PATH"],
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env["RAY_NUM_REDIS_GET_RETRIES"] = "2"  # Ray's tries to reach the GCS, 20 by default
    address = shared_ray["RAY_ADDRESS"]
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(tiny_toon), "--no-report"]
    args += ["--storage", str(tmp_path / "s"), "--name", "x", "--address", address]
    refused = study_cli(*args, env=env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --address {address}: cannot connect to Ray"), last
    hint = "RAY_AUTH_MODE is unset, so Ray sent no token: set RAY_AUTH_MODE=token to join a"
    assert last.endswith(f"{hint} cluster with token authentication (docs/cluster.md)"), last


def test_a_refused_ray_address_names_it_and_the_unset_auth_mode(
    tiny_toon, tmp_path, capsys, monkeypatch
) -> None:
    """A driver that joins through RAY_ADDRESS (no --address) and that Ray refuses: the line names
    RAY_ADDRESS, not "cannot start Ray", and says that RAY_AUTH_MODE is unset."""
    address = f"127.0.0.1:{dead_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)

    def refused(**_) -> None:
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.setattr(ray, "init", refused)
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(tiny_toon), "--no-report"]
    assert run.main([*args, "--storage", str(tmp_path / "s")]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        f"error: RAY_ADDRESS {address}: cannot connect to Ray (ConnectionError: Failed to connect"
        f" to Ray cluster at {address}); RAY_AUTH_MODE is unset, so Ray sent no token: set"
        " RAY_AUTH_MODE=token to join a cluster with token authentication (docs/cluster.md)"
    )
