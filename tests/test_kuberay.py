"""The KubeRay manifests (deploy/kuberay/) against the real CRDs: the `openAPIV3Schema` of the
`ray.io/v1` RayCluster and RayJob of KubeRay 1.5.1 (the oldest operator the docs admit) and 1.7.0,
vendored unchanged in deploy/kuberay/crds/ (their README names the tag, commit and hashes). No
Kubernetes runs here: what an API server would reject, or silently drop, has to fail here, and
so do a few planted mistakes. Then what the schema cannot say: sizes that fit the nodes, security
settings on every container, a RayJob that runs again, one source for both files."""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "deploy" / "kuberay"
CRDS = sorted(p.name for p in (KUBERAY / "crds").iterdir() if p.is_dir())
PLURAL = {"RayCluster": "rayclusters", "RayJob": "rayjobs"}
MANIFESTS = ("raycluster.yaml", "rayjob.yaml")


def strict(node: Any) -> Any:
    """The CRD schema as the API server applies it with kubectl's default strict field
    validation: a field the schema does not name is an error (pruned without a word otherwise;
    for authOptions that would mean token auth off), except under
    x-kubernetes-preserve-unknown-fields. CEL rules (x-kubernetes-validations) are not checked."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(release: str, kind: str) -> dict[str, Any]:
    path = KUBERAY / "crds" / release / f"ray.io_{PLURAL[kind]}.yaml.gz"
    text = gzip.decompress(path.read_bytes()).decode()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(v1["schema"]["openAPIV3Schema"])


def errors(doc: dict[str, Any], release: str) -> list[str]:
    schema = crd_schema(release, doc["kind"])
    found = jsonschema.Draft4Validator(schema).iter_errors(doc)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def load(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((KUBERAY / name).read_text()))
    assert len(docs) == 1, f"{name}: one object expected"
    return docs[0]


def test_the_vendored_crds_are_kuberay_releases() -> None:
    assert CRDS == ["v1.5.1", "v1.7.0"]  # the docs' minimum and the newest release
    for release in CRDS:
        readme = (KUBERAY / "crds" / release / "README.md").read_text()
        assert f"tag `{release}`" in readme
        for gz in (KUBERAY / "crds" / release).glob("*.yaml.gz"):  # the release's bytes, gzipped
            digest = hashlib.sha256(gzip.decompress(gz.read_bytes())).hexdigest()
            assert f"| {gz.name.removesuffix('.gz')} |" in readme and digest in readme, gz
        for kind in PLURAL:
            assert crd_schema(release, kind)["properties"]["spec"]["type"] == "object"


@pytest.mark.parametrize("release", CRDS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_pass_the_crd_schema(name: str, release: str) -> None:
    assert errors(load(name), release) == []


def pod(spec: dict[str, Any], group: str) -> dict[str, Any]:
    groups = {"head": spec["headGroupSpec"], "worker": spec["workerGroupSpecs"][0]}
    return groups[group]["template"]["spec"]


MISTAKES = {
    # a misspelt field: pruned by a lenient API server, so the worker group would vanish
    "workerGroupSpec": lambda s: s.update(workerGroupSpec=s.pop("workerGroupSpecs")),
    "mode 'tokens'": lambda s: s["authOptions"].update(mode="tokens"),
    "maxReplicas 'four'": lambda s: s["workerGroupSpecs"][0].update(maxReplicas="four"),
    "num-cpus 0 (not '0')": lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
    "gpu 'one'": lambda s: pod(s, "worker")["containers"][0]["resources"]["limits"].update(
        {"nvidia.com/gpu": "one"}
    ),
    "seccompProfile: RuntimeDefault (a string)": lambda s: pod(s, "head")["securityContext"].update(
        seccompProfile="RuntimeDefault"
    ),
    "runAsNonroot": lambda s: pod(s, "head")["containers"][0]["securityContext"].update(
        runAsNonroot=True
    ),
    "autoscaler privileged 'no'": lambda s: s["autoscalerOptions"]["securityContext"].update(
        privileged="no"
    ),
}


@pytest.mark.parametrize("release", CRDS)
@pytest.mark.parametrize("mistake", MISTAKES)
def test_planted_mistakes_fail_the_crd_schema(mistake: str, release: str) -> None:
    """The check above can fail: plausible mistakes in the cluster are rejected, in the RayJob's
    copy of it too."""
    for name in MANIFESTS:
        doc = copy.deepcopy(load(name))
        MISTAKES[mistake](
            doc["spec"] if name == "raycluster.yaml" else doc["spec"]["rayClusterSpec"]
        )
        assert errors(doc, release), f"{name}: {mistake} passed"


@pytest.mark.parametrize("release", CRDS)
def test_planted_job_mistakes_fail_the_crd_schema(release: str) -> None:
    job = load("rayjob.yaml")
    for edit in (
        lambda s: s.update(activeDeadlineSeconds="8h"),
        lambda s: s.update(shutdownAfterJobFinish=True),  # misspelt: the cluster would stay
        lambda s: s["submitterPodTemplate"]["spec"]["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation="false"
        ),
    ):
        doc = copy.deepcopy(job)
        edit(doc["spec"])
        assert errors(doc, release)


# --- what the schema cannot say ------------------------------------------------------------------


def render_module():
    spec = importlib.util.spec_from_file_location("render", KUBERAY / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def gib(q: str) -> float:
    units = {"Mi": 1 / 1024, "Gi": 1.0}
    return float(q[:-2]) * units[q[-2:]]


# A 4-vCPU, 16-GiB node (m5.xlarge): the kubelet and system reserve about 0.1 CPU and 1-1.5 GiB
# on EKS and GKE, and DaemonSets (kube-proxy, the CNI, CSI drivers, log and metrics agents) take a
# few hundred millicores and MiB more. What the head pod may request:
HEAD_NODE_BUDGET = {"cpu": 3.5, "memory_gib": 13.5}


def test_the_head_pod_fits_a_4_vcpu_node_with_the_autoscaler() -> None:
    spec = load("raycluster.yaml")["spec"]
    (head,) = pod(spec, "head")["containers"]
    autoscaler = spec["autoscalerOptions"]["resources"]  # KubeRay's sidecar in the head pod
    for kind in ("requests", "limits"):
        cpus = cpu(head["resources"][kind]["cpu"]) + cpu(autoscaler[kind]["cpu"])
        mem = gib(head["resources"][kind]["memory"]) + gib(autoscaler[kind]["memory"])
        assert cpus <= HEAD_NODE_BUDGET["cpu"], (kind, cpus)
        assert mem <= HEAD_NODE_BUDGET["memory_gib"], (kind, mem)
    (worker,) = pod(spec, "worker")["containers"]  # a g5.xlarge: 4 vCPU, 16 GiB, one GPU
    assert cpu(worker["resources"]["requests"]["cpu"]) <= HEAD_NODE_BUDGET["cpu"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == 1


def containers(name: str) -> dict[str, tuple[dict, dict | None]]:
    """Every container the manifest makes, with its pod's securityContext (the autoscaler's is
    the head pod's)."""
    doc = load(name)
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    out = {}
    for group in ("head", "worker"):
        p = pod(spec, group)
        out |= {c["name"]: (c, p.get("securityContext")) for c in p["containers"]}
    out["autoscaler"] = (spec["autoscalerOptions"], pod(spec, "head").get("securityContext"))
    if doc["kind"] == "RayJob":
        p = doc["spec"]["submitterPodTemplate"]["spec"]
        out |= {c["name"]: (c, p.get("securityContext")) for c in p["containers"]}
    return out


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_container_runs_unprivileged_under_runtime_default_seccomp(name: str) -> None:
    found = containers(name)
    assert {"ray-head", "ray-worker", "autoscaler"} <= set(found)
    for what, (container, pod_security) in found.items():
        sc = container.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, what
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], what
        assert sc.get("runAsNonRoot") is True and not sc.get("privileged"), what
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, what
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, what
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0, what
        # the token comes from the operator's Secret, never from this file
        assert not [e for e in container.get("env", []) if e["name"] == "RAY_AUTH_TOKEN"], what


def test_the_rayjob_can_run_again_and_has_a_deadline() -> None:
    from study.run import __main__ as run

    job = load("rayjob.yaml")
    meta = job["metadata"]
    # `kubectl create` names each one anew; KubeRay: a DNS-1035 name of at most 47 characters
    assert "name" not in meta and re.fullmatch(r"[a-z]([-a-z0-9]*)-", meta["generateName"])
    assert len(meta["generateName"]) + 5 <= 47
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
    assert 3600 <= spec["activeDeadlineSeconds"] <= 24 * 3600
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "study.run"]
    a = run.parse_args(argv[3:])  # every flag exists; a typo would exit here
    assert a.name is None  # each run a new study, <space>-<UTC time>: a second run is no clash
    assert a.space == "googlenet_manga" and a.address == "auto" and a.gpus_per_trial >= 1
    assert a.storage.startswith("s3://") and a.data_dir.startswith("s3://")  # the cluster goes
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"  # a Job's pod must not be Always
    assert "command" not in submitter["containers"][0]  # KubeRay fills in `ray job submit`


def test_rayjob_is_rendered_from_the_raycluster() -> None:
    """One source: rayjob.yaml is what render.py makes of raycluster.yaml right now."""
    assert (KUBERAY / "rayjob.yaml").read_text() == render_module().render(), (
        "deploy/kuberay/rayjob.yaml is stale: run python deploy/kuberay/render.py"
    )
    assert load("rayjob.yaml")["spec"]["rayClusterSpec"] == load("raycluster.yaml")["spec"]


def test_raycluster_scales_gpu_workers_with_auth_on_and_the_dashboard_private() -> None:
    from test_deploy import locked

    spec = load("raycluster.yaml")["spec"]
    assert spec["rayVersion"] == locked()["ray"]  # the image's Ray
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head.get("enableIngress") is False
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert head["rayStartParams"]["num-cpus"] == "0"  # no trials on the head
    (gpu,) = spec["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 <= gpu["replicas"] <= gpu["maxReplicas"] >= 1
    # workers (user code, untrusted images) run under their own bucket-only account
    accounts = {pod(spec, "head")["serviceAccountName"], pod(spec, "worker")["serviceAccountName"]}
    assert accounts == {"study-head", "study-worker"}
    # nothing in deploy/kuberay exposes a Service (the dashboard) outside the cluster
    for path in KUBERAY.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("kind") == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path
