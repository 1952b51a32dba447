# The image every Ray node of a study can run (cluster.yaml's `docker:` block, deploy/kuberay/):
# Ray's own image for the pinned Ray, Python and CUDA, with this project and its dependencies
# installed. Build and push: docs/cluster.md "Container image".
#
# No secrets go in: the Ray token, cloud credentials and data sets come at run time (a mounted
# token file or RAY_AUTH_TOKEN, instance profiles / service accounts, --data-dir s3://...).
# .dockerignore keeps data/, studies/, .git and any token or key file out of the build context.

# The Ray version of pyproject's range that laptop, image and cluster.yaml all run (a cluster and
# the `ray` CLI talking to it must run the same Ray); Python as in pyproject (>= 3.11).
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
# Ray's GPU images carry a CUDA runtime (-cuXXX); torch's wheel brings its own CUDA libraries, so
# what the node needs is an NVIDIA driver new enough for torch's CUDA (`python -c "import torch;
# print(torch.version.cuda)"` in the image says which).
ARG CUDA_TAG=cu128
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${CUDA_TAG}
ARG RAY_VERSION

# Ray's image already runs as the unprivileged user `ray` (uid 1000, home /home/ray); say so, so
# that nothing below (and no container started from it) runs as root.
USER ray
WORKDIR /home/ray/study

# Token authentication on for every process in the container (ray start, drivers, the CLI);
# the token itself is mounted or set at run time, never built in.
ENV RAY_AUTH_MODE=token \
    RAY_USAGE_STATS_ENABLED=0 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Only what the package needs (pyproject's package list); the rest of the checkout travels with
# `ray job submit --working-dir .` when you want your local edits on the cluster.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users study/ study/
COPY --chown=ray:users search_spaces/ search_spaces/

# The project at pyproject's versions, plus the extras a cluster node uses: ray[default] (job
# API, dashboard, state API), boto3 (the autoscaler on AWS), psycopg (a PostgreSQL
# --optuna-storage). Ray stays at the image's version.
RUN pip install ".[cluster,s3,postgres]" "ray[default,tune]==${RAY_VERSION}" \
    && python -c "import study.run, ray; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"
