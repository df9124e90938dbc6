"""Refused registrations are counted by reason, each once."""

from common.metrics import REJECTED


def _rejected(reason: str) -> float:
    return REJECTED.labels(reason)._value.get()


def test_a_registration_without_a_photo_is_counted_once(instance_app, post_registration):
    before = _rejected("missing_field")
    response = post_registration(photo=False)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "photo"
    assert _rejected("missing_field") - before == 1
