"""The alert-mail waiter: only messages that arrive after the watch began, each once, oldest first."""

import threading

from mailsink import maildir
from mailsink.watch import MailWatch, alert_mail


def _mail(subject: str) -> bytes:
    return f"From: am@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def test_only_new_matching_mail_is_handed_out_once(tmp_path):
    maildir.store(tmp_path, _mail("[FIRING:1] ReplicaDown on instance-2: old"))
    watch = MailWatch(tmp_path)
    maildir.store(tmp_path, _mail("[FIRING:1] ReplicaDown on instance-1: other machine"))
    maildir.store(tmp_path, _mail("[FIRING:1] ReplicaDown on instance-2: new"))
    maildir.store(tmp_path, _mail("[RESOLVED] ReplicaDown on instance-2: back"))
    firing = watch.wait(alert_mail("FIRING", "ReplicaDown", "instance-2"), timeout=1)
    assert firing["Subject"] == "[FIRING:1] ReplicaDown on instance-2: new"
    resolved = watch.wait(alert_mail("RESOLVED", "ReplicaDown", "instance-2"), timeout=1)
    assert resolved["Subject"] == "[RESOLVED] ReplicaDown on instance-2: back"
    assert watch.wait(timeout=0.3) is None  # every message was handed out or passed over


def test_waits_for_mail_that_arrives_later_and_for_a_folder_not_made_yet(tmp_path):
    folder = tmp_path / "mail"
    watch = MailWatch(folder)
    timer = threading.Timer(0.5, lambda: maildir.store(folder, _mail("[FIRING:1] RedisDown on redis: down")))
    timer.start()
    try:
        message = watch.wait(alert_mail("FIRING", "RedisDown", "redis"), timeout=10)
    finally:
        timer.cancel()
    assert message is not None and message["Subject"].endswith("down")
