"""The MongoDB bootstrap (k8s/base/mongodb-bootstrap.js, run by mongodb-0's `bootstrap`
container) against a stand-in replica set (mongosh/fake_replica_set.js, node): no mongod runs
here. It must form a replica set with fewer nodes than members, and keep working when
mongodb-0 came back as a secondary."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from deploytools import repo_file

FAKE = Path(__file__).resolve().parent / "mongosh" / "fake_replica_set.js"
ENV = {
    "MONGO_MEMBERS": "3",
    "MONGO_DB": "vaccination",
    "MONGO_ROOT_USERNAME": "root",
    "MONGO_ROOT_PASSWORD": "root-password/with:odd@chars",
    "MONGO_APP_USERNAME": "vaccination",
    "MONGO_APP_PASSWORD": "new-app-password",
}
ROOT_USER = {"pwd": ENV["MONGO_ROOT_PASSWORD"], "roles": ["root"]}


def member(i: int) -> str:
    return f"mongodb-{i}.mongodb:27017"


def bootstrap(**scenario) -> dict:
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed: apt-get install -y nodejs (init.sh's DEBIAN_PACKAGES)")
    scenario.setdefault("env", ENV)
    script = repo_file("k8s/base/mongodb-bootstrap.js")
    done = subprocess.run(
        [node, str(FAKE), str(script)], input=json.dumps(scenario), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_one_node_of_three_still_forms_a_replica_set_and_waits_for_the_others():
    state = bootstrap(answering=[member(0)])
    assert state["initiated"] and state["members"] == [member(0)]
    assert set(state["users"]) == {"root", "vaccination"}
    assert "waiting for mongodb-1.mongodb:27017, mongodb-2.mongodb:27017" in state["error"]  # retried

    # the retry once the other members are scheduled
    state = bootstrap(
        answering=[member(i) for i in range(3)], **{k: state[k] for k in ("initiated", "members", "primary", "users")}
    )
    assert state["error"] is None
    assert state["members"] == [member(i) for i in range(3)]


def test_a_secondary_mongodb_0_works_on_the_primary():
    state = bootstrap(
        initiated=True,
        members=[member(0), member(1)],
        primary=member(1),
        answering=[member(i) for i in range(3)],
        users={"root": ROOT_USER, "vaccination": {"pwd": "old-app-password", "roles": []}},
    )
    assert state["error"] is None
    assert state["users"]["vaccination"]["pwd"] == ENV["MONGO_APP_PASSWORD"]  # the password follows the Secret
    assert state["members"] == [member(i) for i in range(3)]


def test_a_single_member_replica_set_completes():
    state = bootstrap(answering=[member(0)], env={**ENV, "MONGO_MEMBERS": "1"})
    assert state["error"] is None and state["members"] == [member(0)]


def test_a_second_run_changes_nothing():
    first = bootstrap(answering=[member(0)], env={**ENV, "MONGO_MEMBERS": "1"})
    again = bootstrap(
        answering=[member(0)],
        env={**ENV, "MONGO_MEMBERS": "1"},
        **{k: first[k] for k in ("initiated", "members", "primary", "users")},
    )
    assert again["error"] is None
    assert (again["members"], again["users"]) == (first["members"], first["users"])
