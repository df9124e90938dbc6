"""A part of the native stack: a foreground process (nothing daemonises itself) with a log
file and a health check, run by supervisord, so each is started, watched and stopped the same way."""

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Part:
    name: str
    argv: list[str]
    health: str  # "http://..." (expects 2xx) or "tcp://host:port"
    port: int
    env: dict[str, str | None] = field(default_factory=dict)  # None: not passed, the default applies
    prepare: Callable[[], None] | None = None  # before a deliberate start, not before a restart
    listens_to: str | None = None  # supervisord event types: the part runs as its event listener
