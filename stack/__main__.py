"""./init.sh's subcommands (the shell script installs, then hands over to this module)."""

import argparse
import os
import shutil
import subprocess
import sys

from stack import logview, seed, suite_coverage, supervisor
from stack.parts import all_parts
from stack.settings import PAIR, ROOT, BadSecret, load


def _find(parts, name):
    for part in parts:
        if part.name == name:
            return part
    names = ", ".join(p.name for p in parts)
    sys.exit(f"no part named {name!r}; parts: {names}")


def up(args) -> int:
    s = load()
    for part in all_parts(s):
        was_running = supervisor.running_pid(s, part)
        try:
            pid = supervisor.start(s, part)
        except (RuntimeError, OSError, KeyError) as error:
            print(f"  {part.name:<18} FAILED: {error}", file=sys.stderr)
            return 1
        print(f"  {part.name:<18} {'already up' if was_running else 'up'} (pid {pid}, port {part.port})")
    print(f"\nRegistration site: {s.public_url}/")
    print(f"Chart:             {s.public_url}/api/chart")
    print(f"Report (admin):    {s.public_url}/api/reports/cities.xlsx")
    if any(p.name == "prometheus-1" for p in all_parts(s)):
        for kind in ("Prometheus", "Alertmanager"):
            urls = (f"http://127.0.0.1:{s.member_port(kind.upper(), n)}/" for n in PAIR)
            print(f"{kind + ':':<18} {'  '.join(urls)}")
        print(f"Dashboards:        http://127.0.0.1:{s.member_port('PROMETHEUS', 1)}/consoles/index.html")
        print(f"Alert mail:        {s.mail_dir}/")
    print(f"Logs:              ./init.sh logs [part] [--browse]   ({s.log_dir}/)")
    print(f"Admin login:       admin / {s.secrets['ADMIN_PASSWORD']}")
    return 0


def down(args) -> int:
    s = load()
    for part in reversed(all_parts(s)):
        if supervisor.stop(s, part):
            print(f"  {part.name:<18} stopped")
    return 0


def status(args) -> int:
    """Each part as supervisord has it; `crash-looping` (FATAL) parts are left down for a person."""
    s = load()
    all_up = True
    print(f"  {'part':<18} {'state':<13} {'pid':>7}  port")
    for part in all_parts(s):
        pid = supervisor.running_pid(s, part)
        word = supervisor.STATE_WORDS.get(supervisor.state(s, part), "down")
        state = "up" if pid and supervisor.healthy(part) else ("sick" if pid else word)
        all_up &= state == "up"
        print(f"  {part.name:<18} {state:<13} {pid or '-':>7}  {part.port}")
    return 0 if all_up else 3


def start_part(args) -> int:
    s = load()
    pid = supervisor.start(s, _find(all_parts(s), args.part))
    print(f"{args.part} up (pid {pid})")
    return 0


def stop_part(args) -> int:
    s = load()
    stopped = supervisor.stop(s, _find(all_parts(s), args.part))
    print(f"{args.part} {'stopped' if stopped else 'was not running'}")
    return 0


def freeze_part(args) -> int:
    s = load()
    supervisor.freeze(s, _find(all_parts(s), args.part), args.command == "freeze")
    print(f"{args.part} {'frozen (SIGSTOP)' if args.command == 'freeze' else 'thawed (SIGCONT)'}")
    return 0


def reload_part(args) -> int:
    s = load()
    parts = all_parts(s)
    # a pair's name (prometheus, alertmanager) reloads both members: they read the same files
    members = [p for p in parts if p.name in (f"{args.part}-{n}" for n in PAIR)] or [_find(parts, args.part)]
    for part in members:
        try:
            supervisor.reload(s, part)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
        print(f"{part.name} asked to reload its configuration (SIGHUP)")
    return 0


def logs(args) -> int:
    s = load()
    names = [args.part] if args.part else [p.name for p in all_parts(s)]
    if args.browse:
        return logview.browse(s.log_dir, names, s.run_dir / "lnav")
    return logview.show(
        s.log_dir, names, level=args.level, request_id=args.request_id, follow=args.follow, lines=args.lines
    )


def run_seed(args) -> int:
    seed.run(load(), args.count)
    return 0


def test(args) -> int:
    """Isolated stack (own ports and state folder), the whole pytest suite, then down."""
    var = ROOT / "var" / "test"
    # TEST_PORT_OFFSET lets two checkouts run their suites side by side
    os.environ.update(
        PORT_OFFSET=os.environ.get("TEST_PORT_OFFSET", "10000"), VAR_DIR=str(var), ENV_FILE=str(var / ".env")
    )
    for name in ("MONGO_URL", "CLOUDINARY_URL", "LOKI_URL"):
        os.environ.pop(name, None)  # the suite runs against the stack it starts, nothing external
    # the throttle tests wait for a window to end: a shorter one than production's 60 s
    os.environ.setdefault("ADMIN_AUTH_WINDOW_SECONDS", "20")
    down(args)
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    measure = os.environ.get("TEST_COVERAGE", "1") != "0"
    measured = suite_coverage.start(var / "coverage") if measure else None
    code = up(args)
    try:
        if code == 0:
            pytest = [sys.executable, "-m", "pytest", "--durations=15", *args.tool_args]
            code = subprocess.call(pytest, cwd=ROOT)
    finally:
        down(args)
    if measure:
        suite_coverage.report(measured, var / "coverage")
    return code


def load_test(args) -> int:
    """locust against the running stack (headless by default; --ui for the web UI)."""
    s = load()
    if not supervisor.stack_is_up(s, ["nginx"]):
        return 2
    env = {**os.environ, "PUBLIC_PORT": str(s.ports["PUBLIC_PORT"]), "ADMIN_PASSWORD": s.secrets["ADMIN_PASSWORD"]}
    return subprocess.call([sys.executable, "-m", "loadtests.run", *args.tool_args], cwd=ROOT, env=env)


def drill(args) -> int:
    """The failover drill: lose one part under load, bring it back, print what it cost."""
    return subprocess.call([sys.executable, "-m", "loadtests.drill", *args.tool_args], cwd=ROOT)


def chaos(args) -> int:
    """Random faults, one at a time, under load; one JSON line of verdict (loadtests/chaos.py)."""
    return subprocess.call([sys.executable, "-m", "loadtests.chaos", *args.tool_args], cwd=ROOT)


def bench(args) -> int:
    """Benchmarks of the running stack against baselines started for the run, printed as ratios."""
    return subprocess.call([sys.executable, "-m", "loadtests.bench", *args.tool_args], cwd=ROOT)


PASS_THROUGH = {"test": test, "load": load_test, "drill": drill, "chaos": chaos, "bench": bench}


def main() -> int:
    # everything the stack writes (configs with secrets, .env, logs, data) is private; the
    # parts inherit this, and nginx's workers run as the same user (stack/parts.py)
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="./init.sh", description="Run the vaccination cluster natively.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("up", help="start everything (the default)").set_defaults(func=up)
    sub.add_parser("down", help="stop everything").set_defaults(func=down)
    sub.add_parser("status", help="each part: up/down/crash-looping, pid, port").set_defaults(func=status)
    for name, func, text in (
        ("start", start_part, "start one part"),
        ("stop", stop_part, "stop one part (supervisord leaves it down)"),
        ("freeze", freeze_part, "SIGSTOP one part (a hung machine)"),
        ("thaw", freeze_part, "SIGCONT a frozen part"),
        ("reload", reload_part, "SIGHUP prometheus[-1|-2], alertmanager[-1|-2]: re-read their files"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("part")
        command.set_defaults(func=func)
    command = sub.add_parser("logs", help="show (and follow) the JSON logs")
    command.add_argument("part", nargs="?")
    command.add_argument("--level", help="only this level and above (info, warning, error)")
    command.add_argument("--request-id", help="only lines about this request")
    command.add_argument("-f", "--follow", action="store_true", help="keep following")
    command.add_argument("-n", "--lines", type=int, default=50, help="lines per part to start with")
    command.add_argument("--browse", action="store_true", help="open the logs in lnav (SQL on their fields)")
    command.set_defaults(func=logs)
    command = sub.add_parser("seed", help="bulk-load N synthetic registrations")
    command.add_argument("count", type=int)
    command.set_defaults(func=run_seed)
    sub.add_parser("test", help="the whole test suite against an isolated stack (options go to pytest)")
    sub.add_parser("load", help="locust load test (options: ./init.sh load --help)")
    sub.add_parser("drill", help="failover drill under load (options: ./init.sh drill --help)")
    sub.add_parser("chaos", help="random faults under load, a verdict (options: ./init.sh chaos --help)")
    sub.add_parser("bench", help="benchmarks against baselines, as ratios (options: ./init.sh bench --help)")
    argv = sys.argv[1:]
    if argv[:1] and argv[0] in PASS_THROUGH:  # everything after it belongs to pytest / locust
        args = argparse.Namespace(command=argv[0], func=PASS_THROUGH[argv[0]], tool_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args) if args.command else up(args)
    except BadSecret as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
