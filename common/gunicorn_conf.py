"""gunicorn settings shared by both services (`gunicorn -c python:common.gunicorn_conf ...`)."""

import contextlib
import os
import resource
import shutil
from pathlib import Path

from gunicorn import glogging
from gunicorn.workers import gthread

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gthread: a report download streams for seconds; threads keep the worker answering others.
worker_class = "common.gunicorn_conf.ThreadWorker"


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker that lets go of the listening socket as soon as it stops.

    A stopping worker stops accepting but keeps its copy of the socket until its grace period
    ends (a report can take it all), so the kernel still completes new connections from nginx
    into the backlog and the request sent on one waits there unanswered: a registration lost at
    every graceful restart. Once the master and every worker have closed their copies, nginx
    is refused at connect time and tries the next replica, which is safe even for a POST.
    """

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()  # closed again at the end of run(): a no-op then


threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Reports of 100k rows take a while to build before the first byte; registrations are fast.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 20
# nginx keeps upstream connections open; keep ours open a little longer than its idle timeout.
keepalive = 75
accesslog = None  # the app writes one JSON access line per request itself


class _Logger(glogging.Logger):
    """gunicorn's logger without its access line: with a logging config it would build each
    request's line (a twentieth of a cached chart answer) for a logger that has no handler."""

    def access(self, resp, req, environ, request_time):
        pass


logger_class = _Logger
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "common.logs.GunicornFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False},
    },
}


def on_starting(server):
    # Counters of a previous run must not leak into this one (multiprocess mode reads every file).
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)
    # Natively each service has a private TMPDIR; what a killed worker left there (openpyxl's
    # spool files hold report rows, so personal data) goes at every start, restarts included.
    private_tmp = os.environ.get("PRIVATE_TMPDIR")
    if private_tmp:
        shutil.rmtree(private_tmp, ignore_errors=True)
        Path(private_tmp).mkdir(parents=True, mode=0o700)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: every connection, stream and report spool file
    is a descriptor, and the common soft default of 1024 is far below what the host allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite NOFILE; 2**20 is its usual nr_open
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # then the soft limit simply stays
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def post_fork(server, worker):
    raise_open_files_limit()
