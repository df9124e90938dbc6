"""`./init.sh seed N`: N registrations in the database, their one photo in the photo store."""

from stack import seed


def test_seeded_registrations_have_a_photo_the_admin_route_serves(stack, http):
    before = {doc["_id"] for doc in stack.db.registrations.find({}, {"_id": 1})}
    seed.run(stack.settings, 20)
    seeded = [doc for doc in stack.db.registrations.find() if doc["_id"] not in before]
    assert len(seeded) == 20
    assert len({doc["photo_key"] for doc in seeded}) == 1  # one synthetic photo for all
    photo = http.get(f"{stack.url}/api/registrations/{seeded[0]['_id']}/photo", auth=stack.admin, timeout=10)
    assert photo.status_code == 200 and photo.headers["Content-Type"] == "image/jpeg"
    assert photo.content[:2] == b"\xff\xd8"
