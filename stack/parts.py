"""The native stack's layout: every part, how it is started and how to tell it is up.

The services' settings are passed on only where the operator set them (environment or .env);
what is not set, each service reads from its own defaults (instance/config.py,
middleware/config.py, common/gunicorn_conf.py).
"""

import grp
import os
import pwd
import shutil
import sys
from pathlib import Path

from stack.observability import observability
from stack.part import Part
from stack.render import render
from stack.settings import INSTANCES, ROOT, Settings

VENV_BIN = Path(sys.executable).parent


def _nginx_user() -> str:
    """Started as root, nginx would drop its workers to `nobody` (or www-data if told), who
    cannot enter the private var/ folder, least of all in a checkout under /root. Natively
    every part runs as the user who started the stack (gunicorn too), so the workers do."""
    if os.geteuid() != 0:
        return ""  # an unprivileged nginx cannot switch user anyway
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def _nginx_part(s: Settings, name: str, template: Path, values: dict[str, str], port: int, health: str) -> Part:
    conf = s.run_dir / f"{name}.conf"
    main_conf = s.run_dir / f"{name}.main.conf"

    def prepare():
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (s.run_dir / name / sub).mkdir(parents=True, exist_ok=True)
        conf.write_text(render(template.read_text(), values))
        main_conf.write_text(
            render(
                (ROOT / "nginx/native.conf.template").read_text(),
                {
                    "NGINX_USER_DIRECTIVE": _nginx_user(),
                    "RUN_DIR": str(s.run_dir),
                    "LOG_DIR": str(s.log_dir),
                    "PART": name,
                },
            )
        )

    return Part(
        name,
        [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(main_conf), "-e", str(s.log_dir / f"{name}.error.log")],
        health,
        port,
        prepare=prepare,
    )


def _mongodb(s: Settings) -> Part | None:
    if s.get("MONGO_URL"):
        return None  # an external database: not ours to start
    port = s.ports["MONGO_PORT"]
    data = s.data_dir / "mongodb"
    mongod = shutil.which("mongod")
    if mongod:
        argv = [mongod, "--dbpath", str(data), "--port", str(port), "--bind_ip", "127.0.0.1", "--quiet"]
    else:
        argv = [
            sys.executable,
            "-m",
            "stack.embedded_mongo",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--log-file",
            str(s.log_dir / "mongodb.nx.log"),
            "--pid-file",
            str(s.run_dir / "mongodb.nx.pid"),
        ]
    return Part(
        "mongodb", argv, f"tcp://127.0.0.1:{port}", port, prepare=lambda: data.mkdir(parents=True, exist_ok=True)
    )


def operator_set(s: Settings, *names: str) -> dict[str, str | None]:
    """The values the operator set; None (not passed) leaves the service's own default."""
    return {name: s.get(name) or None for name in names}


def gunicorn(s: Settings, name: str, app: str, port: int, env: dict[str, str | None]) -> Part:
    multiproc = s.run_dir / "metrics" / name
    # Its own temporary folder, private like all of var/, emptied by gunicorn at every start
    # (common/gunicorn_conf.py), so after supervisord's restarts too.
    tmp = s.run_dir / "tmp" / name

    def prepare() -> None:
        multiproc.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, mode=0o700, exist_ok=True)

    return Part(
        name,
        [str(VENV_BIN / "gunicorn"), "-c", "python:common.gunicorn_conf", app],
        f"http://127.0.0.1:{port}/health",
        port,
        env={
            "BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "SERVICE_NAME": "instance" if name.startswith("instance") else name,
            "MONGO_URL": s.mongo_url,
            **operator_set(s, "LOG_LEVEL", "LOKI_URL", "GUNICORN_WORKERS", "GUNICORN_THREADS"),
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(tmp),
            "PRIVATE_TMPDIR": str(tmp),
            **env,
        },
        prepare=prepare,
    )


def cluster(s: Settings) -> list[Part]:
    p = s.ports
    photo_root = s.data_dir / "photos"
    parts = [part for part in [_mongodb(s)] if part]

    redis_conf = s.run_dir / "redis.conf"

    def prepare_redis():
        (s.data_dir / "redis").mkdir(parents=True, exist_ok=True)
        # the password in a private file, not on the command line where `ps` shows it to every user
        redis_conf.write_text(f"requirepass {s.secrets['REDIS_PASSWORD']}\n")
        redis_conf.chmod(0o600)

    parts.append(
        Part(
            "redis",
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                str(redis_conf),
                "--port",
                str(p["REDIS_PORT"]),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
                "--dir",
                str(s.data_dir / "redis"),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory",
                "256mb",
                "--maxmemory-policy",
                "allkeys-lru",
                "--logfile",
                "",
            ],
            f"tcp://127.0.0.1:{p['REDIS_PORT']}",
            p["REDIS_PORT"],
            prepare=prepare_redis,
        )
    )

    def prepare_photo_root():
        photo_root.mkdir(parents=True, exist_ok=True)
        os.chmod(photo_root, 0o700)

    store = _nginx_part(
        s,
        "photo-store",
        ROOT / "photo-store/templates/default.conf.template",
        {
            "BIND_HOST": "127.0.0.1",
            "PHOTO_STORE_PORT": str(p["PHOTO_STORE_PORT"]),
            "PHOTO_STORE_TOKEN": s.secrets["PHOTO_STORE_TOKEN"],
            "PHOTO_STORE_ROOT": str(photo_root),
            "PHOTO_STORE_ACCESS_LOG": str(s.log_dir / "photo-store.log"),
        },
        p["PHOTO_STORE_PORT"],
        f"http://127.0.0.1:{p['PHOTO_STORE_PORT']}/health",
    )
    store_prepare = store.prepare
    store.prepare = lambda: (prepare_photo_root(), store_prepare())
    parts.append(store)

    common = {
        **operator_set(s, "MONGO_DB"),
        "ADMIN_PASSWORD": s.secrets["ADMIN_PASSWORD"],
        "REDIS_URL": s.redis_url,
    }
    for n in range(1, INSTANCES + 1):
        parts.append(
            gunicorn(
                s,
                f"instance-{n}",
                "instance:create_app()",
                s.instance_port(n),
                {
                    **common,
                    "INSTANCE_NAME": f"instance-{n}",
                    "PHOTO_STORE_URL": f"http://127.0.0.1:{p['PHOTO_STORE_PORT']}",
                    "PHOTO_STORE_TOKEN": s.secrets["PHOTO_STORE_TOKEN"],
                    "PHOTO_LINK_SECRET": s.secrets["PHOTO_LINK_SECRET"],
                    "CLOUDINARY_URL": s.get("CLOUDINARY_URL"),
                    "MAX_PHOTO_BYTES": str(s.max_photo_bytes),
                    **operator_set(
                        s,
                        "PHOTO_LINK_TTL_SECONDS",
                        "MAX_PHOTO_PIXELS",
                        "MONGO_TIMEOUT_MS",
                        "PHOTO_MAX_SIDE",
                        "PHOTO_DECODE_MAX_PIXELS",
                        "PHOTO_MAX_SCANS",
                        "PHOTO_DECODES",
                        "PHOTO_DECODE_WAIT_SECONDS",
                        "PHOTO_DECODE_SECONDS",
                        "PHOTO_DECODE_CPU_SECONDS",
                        "ADMIN_AUTH_MAX_FAILURES",
                        "ADMIN_AUTH_WINDOW_SECONDS",
                    ),
                },
            )
        )
    parts.append(
        gunicorn(
            s,
            "middleware",
            "middleware:create_app()",
            p["MIDDLEWARE_PORT"],
            {
                **common,
                "INSTANCE_NAME": "middleware",
                "INSTANCES_URL": f"http://127.0.0.1:{p['NGINX_STATUS_PORT']}",
                **operator_set(s, "CHART_CACHE_TTL_SECONDS"),
            },
        )
    )

    parts.append(
        public_nginx(
            s,
            "nginx",
            [s.instance_port(n) for n in range(1, INSTANCES + 1)],
            p["MIDDLEWARE_PORT"],
            p["PUBLIC_PORT"],
            p["NGINX_STATUS_PORT"],
        )
    )
    return parts


def public_nginx(
    s: Settings, name: str, instance_ports: list[int], middleware_port: int, public_port: int, status_port: int
) -> Part:
    """The public entrypoint (also rendered by the bench in front of its baseline services)."""
    return _nginx_part(
        s,
        name,
        ROOT / "nginx/templates/default.conf.template",
        {
            "BIND_HOST": "127.0.0.1",
            **{f"INSTANCE_{n}_ADDR": f"127.0.0.1:{port}" for n, port in enumerate(instance_ports, start=1)},
            "MIDDLEWARE_ADDR": f"127.0.0.1:{middleware_port}",
            "PHOTO_STORE_ADDR": f"127.0.0.1:{s.ports['PHOTO_STORE_PORT']}",
            "PUBLIC_PORT": str(public_port),
            "NGINX_STATUS_PORT": str(status_port),
            "BODY_LIMIT": f"{s.max_photo_bytes + 2**20}",
            "MAX_PHOTO_MIB": f"{s.max_photo_bytes / 2**20:g}",
            "PHOTO_LINK_SECRET": s.secrets["PHOTO_LINK_SECRET"],
            "PHOTO_STORE_TOKEN": s.secrets["PHOTO_STORE_TOKEN"],
            "NGINX_ACCESS_LOG": str(s.log_dir / f"{name}.log"),
        },
        public_port,
        f"http://127.0.0.1:{public_port}/nginx-health",
    )


def all_parts(s: Settings) -> list[Part]:
    return cluster(s) + observability(s)
