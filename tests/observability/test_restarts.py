"""A part that dies is back by itself (supervisord) and the admin still hears of it, once."""

from mailsink.watch import MailWatch, alert_mail
from polling import wait_for
from stack import supervisor

# firing: a scrape (5 s), an evaluation (5 s), Alertmanager's group_wait (10 s), with room for a busy machine
MAIL_WITHIN_S = 120
# Alertmanager's group_interval (15 s) and a scrape and an evaluation: time enough for a second mail
NO_SECOND_MAIL_S = 30


def test_a_killed_replica_is_back_by_itself_and_one_mail_tells_of_its_restarts(stack):
    victim = "instance-2"  # killed last long before (tests/cluster): no restart alert of it still firing
    mail = MailWatch(stack.settings.mail_dir)

    def pid():
        return supervisor.running_pid(stack.settings, stack.parts[victim])

    for _ in range(2):  # a burst of deaths
        dead = pid()
        stack.kill(victim)  # SIGKILL to its process group, and nobody starts it
        assert wait_for(lambda dead=dead: stack.is_up(victim) and pid() != dead, timeout=60, every=0.2)
    stack.wait_until_routed()

    message = mail.wait(alert_mail("FIRING", "PartRestarted", victim), MAIL_WITHIN_S)
    assert message is not None, f"no PartRestarted mail for {victim} within {MAIL_WITHIN_S}s"
    assert f"{victim} died and was restarted" in message["Subject"]
    assert mail.wait(alert_mail("FIRING", "PartRestarted", victim), NO_SECOND_MAIL_S) is None
