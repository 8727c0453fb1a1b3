# gitops-sync: syncs capabilities/*.yaml into etcd v3.
#
#   docker build -t gitops-sync .
#   docker run --rm -v "$PWD/capabilities:/app/capabilities:ro" \
#       -e ETCD_HOST=etcd1 gitops-sync --capabilities /app/capabilities --watch
#
# Only the package sources are copied into the image (no .git, no .env, no
# local config; .dockerignore keeps .venv, .local and caches out of the build
# context), and the final stage holds just the installed virtualenv.

# The base image, pinned by version and digest (docker buildx imagetools inspect python:3.11.15-slim).
ARG PYTHON_IMAGE=python:3.11.15-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff

# ---- build stage: install the project into an isolated virtualenv ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# README*/LICENSE* are optional (pyproject may reference them as metadata).
COPY pyproject.toml README* LICENSE* ./
COPY src/ ./src/
RUN pip install .

# ---- runtime stage ----------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ETCD_HOST=etcd1 \
    ETCD_PORT=2379 \
    LOG_LEVEL=info

# git and ssh for --git-url (the Git source runs the git command line); gnupg for --git-gpg-keyring.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git openssh-client gnupg \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 gitops \
 && useradd --system --uid 10001 --gid gitops --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin gitops \
 && mkdir -p /app/capabilities \
 && chown -R gitops:gitops /app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER gitops:gitops

# Exits 0 when etcd answers, 3 when it does not (reads ETCD_ENDPOINTS, or ETCD_HOST / ETCD_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["gitops-sync", "--health-check"]

ENTRYPOINT ["gitops-sync"]
CMD ["--capabilities", "/app/capabilities", "--watch"]
