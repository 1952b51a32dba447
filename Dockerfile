# The image every Ray node of a study can run (cluster.yaml's `docker:` block, deploy/kuberay/):
# Ray's own image for the pinned Ray and Python, with this project and the cluster's locked
# dependencies installed. Build and push: docs/cluster.md "Container image".
#
# No secrets go in: the Ray token, cloud credentials and data sets come at run time (a mounted
# token file or RAY_AUTH_TOKEN, instance profiles / service accounts, --data-dir s3://...).
# .dockerignore keeps data/, studies/, .git and any token or key file out of the build context.

# The Ray of the lock (deploy/requirements-cluster.txt pins ray==RAY_VERSION; a test keeps them
# equal: a cluster and the `ray` CLI talking to it must run the same Ray); Python as the lock's.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
# Ray's CPU image: one CUDA in the image, the one torch's wheel brings (the lock's nvidia-*
# packages, CUDA 13.0 for torch 2.14.1). A -cuXXX base would add a second, different CUDA
# toolkit. GPU nodes need an NVIDIA driver for the lock's CUDA (>= 580 for 13.x).
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu
ARG RAY_VERSION

# `ray` (uid 1000, group users 100) in Ray's image, by number: nothing below, and no container
# started from the image, runs as root, whatever the host's user names are.
USER 1000:100
WORKDIR /home/ray/study

# Token authentication on for every process in the container (ray start, drivers, the CLI);
# the token itself is mounted or set at run time, never built in. The NVIDIA runtime mounts only
# nvidia-smi's libraries into a container unless asked for compute (the CUDA images ask; this
# base does not): torch needs libcuda.
ENV RAY_AUTH_MODE=token \
    RAY_USAGE_STATS_ENABLED=0 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The dependencies first, from the lock alone (hashes checked): this layer is rebuilt only when
# the lock changes, not on every edit of the code below.
COPY --chown=1000:100 deploy/requirements-cluster.txt deploy/requirements-cluster.txt
RUN pip install --no-cache-dir --require-hashes -r deploy/requirements-cluster.txt

# The project itself, with nothing more resolved (--no-deps; setuptools is in the lock). Only
# what the package needs; the rest of the checkout travels with `ray job submit --working-dir .`
# when you want your local edits on the cluster.
COPY --chown=1000:100 pyproject.toml setup.py README.md ./
COPY --chown=1000:100 search_spaces/ search_spaces/
COPY --chown=1000:100 study/ study/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python -c "import study.run, ray; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"
