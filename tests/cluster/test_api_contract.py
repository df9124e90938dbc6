"""The OpenAPI document (instance/openapi.json, served at /api/openapi.json) checked against the
live stack by Schemathesis: for every operation, requests that fit the document and requests
that do not, each answered with no 5xx, a documented status code, content type and headers, and
a body that matches the document's schema; requests that do not fit are refused with a 4xx.
A longer run: API_CONTRACT_CASES=150 (per operation and mode) with the suite's arguments.

Admin operations get the right password, and the run connects from an address of its own
(127.0.0.2): the throttle counts wrong passwords per address, so nothing this run does can lock
out the other tests' 127.0.0.1, nor they it. A 429 would still be a documented answer."""

import json
import os
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

DOCUMENT = Path(__file__).parents[2] / "instance" / "openapi.json"
OPERATIONS = [
    (method.upper(), path) for path, methods in json.loads(DOCUMENT.read_text())["paths"].items() for method in methods
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    missing_required_header,
]
# Input the document forbids is refused with a 4xx. Not for admin operations: their negative
# cases drop the Authorization header, which the run then sets again.
PUBLIC_CHECKS = [*CHECKS, negative_data_rejection]
# per operation and mode: about 500 requests in all; more for a longer run
CASES = int(os.environ.get("API_CONTRACT_CASES", 25))
SOURCE_ADDRESS = "127.0.0.2"


class _FromAddress(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(SOURCE_ADDRESS, 0), **kwargs)


@pytest.fixture(scope="module")
def live_schema(stack):
    served = requests.get(f"{stack.url}/api/openapi.json", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "application/json"
    assert served.json() == json.loads(DOCUMENT.read_text())  # the document in the repository is the one served
    return schemathesis.openapi.from_url(f"{stack.url}/api/openapi.json")


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http:
        http.mount("http://", _FromAddress())
        yield http


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_live_api_keeps_its_contract(stack, live_schema, session, method, path, mode):
    operation = live_schema[path][method]
    admin = bool(operation.definition.raw.get("security"))
    auth, checks = (stack.admin, CHECKS) if admin else (None, PUBLIC_CHECKS)

    @settings(
        max_examples=CASES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case):
        case.call_and_validate(base_url=stack.url, session=session, checks=checks, auth=auth, timeout=30)

    try:
        answers_as_documented()
    except Unsatisfiable:
        # e.g. GET /: its one input is a header that takes any string
        assert mode == GenerationMode.NEGATIVE
        pytest.skip("nothing this operation takes can be made invalid")


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("TRACE", "/", "GET, HEAD"),  # nginx refuses TRACE itself, everywhere
        ("TRACE", "/api/registrations", "POST"),
        ("PUT", "/photos/ab/cd?md5=x&expires=1", "GET, HEAD"),
        ("POST", "/nginx-health", "GET, HEAD"),
    ],
)
def test_nginx_answers_a_method_it_refuses_with_json_and_allow(http, stack, method, path, allowed):
    # found by Schemathesis's undeclared-method check: nginx's own HTML 405, and a 403 "link not
    # valid" for a PUT to a photo link
    response = http.request(method, f"{stack.url}{path}", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.headers["X-Request-ID"] and response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.json()["error"]["code"] == "method_not_allowed"
