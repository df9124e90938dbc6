# Both Python services from one file: the registration replica (instance-1..3) and the
# middleware (chart cache, report pass-through). They share the base image, the shared
# `common/` package, the non-root user, the gunicorn start and the healthcheck; what differs
# is the service package, its pinned requirements and its port, chosen by build arguments:
#
#   docker build --build-arg SERVICE=instance   -t vaccination-instance:local .
#   docker build --build-arg SERVICE=middleware --build-arg PORT=8010 -t vaccination-middleware:local .
#
# Build context: the repository root (.dockerignore sends only common/, instance/, middleware/).

# python.org's CPython on Debian bookworm; one pin for every Python image in the repository
# (tests/deploy checks it).
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# --- build stage: the pinned requirements of one service in a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE=instance
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY ${SERVICE}/requirements.lock /tmp/requirements.lock
# Wheels only: every dependency ships manylinux wheels, so no compiler enters the image. The
# lock lists every package with its wheel's sha256 (python -m stack.image_locks): pip refuses
# a file that differs, and installs nothing the lock does not list.
RUN /opt/venv/bin/pip install --only-binary=:all: --no-deps --require-hashes -r /tmp/requirements.lock

# --- runtime stage: the virtualenv, our code, a non-root user -------------------------------
FROM ${PYTHON_IMAGE}
ARG SERVICE=instance
ARG PORT=8000
LABEL org.opencontainers.image.title="vaccination-${SERVICE}" \
      org.opencontainers.image.description="Vaccination ${SERVICE} service (Flask + gunicorn)"

# SERVICE_NAME is also the Python package gunicorn loads (see CMD). HOME: the user has none,
# and gunicorn keeps its control socket there; /tmp is the writable tmpfs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SERVICE_NAME=${SERVICE} \
    INSTANCE_NAME=${SERVICE} \
    BIND=0.0.0.0:${PORT} \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=4 \
    PROMETHEUS_MULTIPROC_DIR=/run/metrics \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp

# A fixed numeric uid so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
 && mkdir -p /run/metrics \
 && chown app:app /run/metrics

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code stays owned by root: the service can read it, never rewrite it.
COPY common/ ./common/
COPY ${SERVICE}/ ./${SERVICE}/
RUN python -m compileall -q /app

USER 10001:10001
EXPOSE ${PORT}

# Liveness only (the process answers); whether the dependencies answer is /ready's business.
# Python, not curl: the slim image has no curl. The port follows BIND.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['BIND'].rsplit(':', 1)[-1]; urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4)"]

# Logs go to stdout as JSON lines (common/logs.py); gunicorn's own lines use the same shape.
# A shell only to name the service's package; exec hands PID 1 to gunicorn for its signals.
CMD ["/bin/sh", "-c", "exec gunicorn -c python:common.gunicorn_conf \"${SERVICE_NAME}:create_app()\""]
