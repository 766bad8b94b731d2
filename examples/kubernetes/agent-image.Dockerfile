# The image behind a Kubernetes backend's `agent_image` (README, "The in-pod agent").
#
# It holds /opt/osmo-agent: a relocatable CPython (python-build-standalone, installed by uv)
# with osmo-jupyter and its data extras installed into it. The backend's init container copies
# that tree into each pod, and the task container, whatever its image, runs
# /osmo/agent/bin/python3 -m osmo_core.agent.pod. The task image needs only glibc and /bin/sh.
#
# Build from the repository root:
#   docker build -f examples/kubernetes/agent-image.Dockerfile -t registry.example/osmo-agent:0.1.0 .
#
# Not built in this project's CI (its machines have no container engine).

FROM debian:bookworm-slim AS build
ARG PYTHON_VERSION=3.11
COPY --from=ghcr.io/astral-sh/uv:latest /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/uv-python
RUN uv python install "${PYTHON_VERSION}" \
 && cp -a "$(dirname "$(dirname "$(uv python find "${PYTHON_VERSION}")")")" /opt/osmo-agent
COPY . /src
# The labextension is not needed in pods: skip the JupyterLab build of the wheel.
ENV HATCH_BUILD_NO_HOOKS=true
# Compiled bytecode in the image: each pod starts from a fresh copy of this tree, so without
# it every pod compiles its agent's imports again (its start takes about three times as long;
# benchmarks/startup.py). `cp -a` keeps the mtimes that keep the .pyc files valid.
RUN uv pip install --python /opt/osmo-agent/bin/python3 --break-system-packages \
      --compile-bytecode "/src[s3,azure]" \
 && /opt/osmo-agent/bin/python3 -m compileall -q -j 0 /opt/osmo-agent/lib

FROM debian:bookworm-slim
COPY --from=build /opt/osmo-agent /opt/osmo-agent
# The init container's default command copies the tree with `cp -a` (coreutils, here).
CMD ["/opt/osmo-agent/bin/python3", "-m", "osmo_core.agent.pod", "--help"]
