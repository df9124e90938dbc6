"""Waiting for mail in the sink's folder: the alert e-mails the drill and the tests expect.

The sink names files so they sort in arrival order (mailsink/maildir.py), so "new since the
watch began" is a set of names, and messages are handed out oldest first.
"""

import email
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path


def alert_mail(status: str, alert: str, target: str) -> Callable[[EmailMessage], bool]:
    """Matches Alertmanager's subject for `alert` about `target`, e.g. "[FIRING:1] ReplicaDown on
    instance-2: ..." (status FIRING or RESOLVED)."""

    def matches(message: EmailMessage) -> bool:
        subject = message["Subject"] or ""
        return subject.startswith(f"[{status}") and alert in subject and target in subject

    return matches


def alert_status(subject: str) -> str:
    """FIRING or RESOLVED, from Alertmanager's subject ("[FIRING:1] ReplicaDown on ...")."""
    return subject[1:].split("]")[0].split(":")[0]


class MailWatch:
    """New messages in a mail folder since the watch began, each handed out once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.before = set(self._names())
        self.seen = set(self.before)

    def _names(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob("*.eml")) if self.folder.exists() else []

    def _read(self, name: str) -> EmailMessage:
        return email.message_from_bytes((self.folder / name).read_bytes(), policy=email_policy)

    def arrived(self, matches: Callable[[EmailMessage], bool] = lambda message: True) -> list[EmailMessage]:
        """Every message since the watch began that `matches`, whether handed out or not: how
        many mails one incident sent."""
        new = (self._read(name) for name in self._names() if name not in self.before)
        return [message for message in new if matches(message)]

    def collect(self) -> list[tuple[float, EmailMessage]]:
        """Every new message not handed out yet, with its arrival time (epoch seconds), oldest first."""
        found = []
        for name in self._names():
            if name not in self.seen:
                self.seen.add(name)
                path = self.folder / name
                found.append((path.stat().st_mtime, self._read(name)))
        return found

    def wait(
        self, matches: Callable[[EmailMessage], bool] = lambda message: True, timeout: float = 60.0
    ) -> EmailMessage | None:
        """The first new message that `matches`, or None after `timeout` seconds. New messages
        that do not match are passed over for good."""
        deadline = time.monotonic() + timeout
        while True:
            for name in self._names():
                if name in self.seen:
                    continue
                self.seen.add(name)
                message = self._read(name)
                if matches(message):
                    return message
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)
