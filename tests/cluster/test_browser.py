"""The web page in a real browser (Debian's Chromium driven by Playwright), through the public nginx.

What a person sees: the form posts, the answer (or the server's error) appears on the page,
the chart image loads and the totals table fills. Data is checked in MongoDB, by id and by a
unique city, never by absolute counts (other tests register at the same time). Every page must
run under its Content-Security-Policy without one violation.

The retry tests make the browser's own network fail (Playwright's page.route answers or drops
a request before it leaves the browser); the retries that follow reach the real stack.
"""

import base64
import json
import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from forms import jpeg

CHART_LOADED = """() => {
  const chart = document.getElementById("chart");
  return chart.complete && chart.naturalWidth > 0;
}"""
expect.set_options(timeout=10_000)  # a registration is fast, but the stack is shared with other tests


# Chromium reports a blocked inline script or style on the console, and the page hears it as an event.
REPORT_POLICY_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) =>
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`));"""
KEY_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@pytest.fixture
def policy_violations() -> list[str]:
    return []


@pytest.fixture
def page(browser, stack, policy_violations) -> Page:
    context = browser.new_context(base_url=stack.url, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(REPORT_POLICY_VIOLATIONS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            policy_violations.append(message.text)
            if message.type == "error"
            and re.search("Content Security Policy|CSP violation|Permissions-Policy", message.text)
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not policy_violations, f"security policy violations on the page: {policy_violations}"


def basic_auth(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def unique_city() -> str:
    return f"Browserville {uuid.uuid4().hex[:12]}"


def fill_form(page: Page, name: str, city: str, photo: bytes, filename: str = "id-card.jpg") -> None:
    page.get_by_label("Full name", exact=True).fill(name)
    page.get_by_label("City", exact=True).fill(city)
    page.get_by_label(re.compile("Photo of your ID card")).set_input_files(
        files=[{"name": filename, "mimeType": "image/jpeg", "buffer": photo}]
    )


def submit(page: Page):
    """Click Register and return the API's answer the page received."""
    with page.expect_response(lambda r: r.url.endswith("/api/registrations") and r.request.method == "POST") as info:
        page.get_by_role("button", name="Register").click()
    return info.value


def test_registering_in_the_browser_shows_the_id_stores_it_and_shows_chart_and_totals(page, stack, tmp_path):
    city = unique_city()
    page.goto("/")
    expect(page).to_have_title("Vaccination registration")
    page.wait_for_function(CHART_LOADED)
    expect(page.locator("#totals thead")).to_contain_text("City")

    fill_form(page, "Browser Tester", city, jpeg(640, 400))
    response = submit(page)
    assert response.status == 201
    registration_id = response.json()["id"]

    result = page.locator("#result")
    expect(result).to_have_class("ok")
    expect(result).to_contain_text(f"Your registration number is {registration_id}.")
    expect(result).to_contain_text(f"Browser Tester ({city})")
    stored = stack.db.registrations.find_one({"_id": registration_id})
    assert stored is not None and stored["name"] == "Browser Tester" and stored["city"] == city
    # the form is emptied for the next person; the chart was reloaded (cache-busted) and drew
    expect(page.get_by_label("Full name", exact=True)).to_have_value("")
    expect(page.locator("#chart")).to_have_attribute("src", re.compile(r"/api/chart\.png\?t=\d+"))
    page.wait_for_function(CHART_LOADED)
    expect(page.locator("#chart-meta")).to_contain_text("Totals as of")
    page.screenshot(path=tmp_path / "registered.png", full_page=True)

    # the totals are cached until a report is generated; a report refreshes them, and then
    # the page lists the new city with its one registration
    report = page.request.get(
        f"/api/reports/cities.xlsx?city={city}", headers={"Authorization": basic_auth(stack.admin)}
    )
    assert report.status == 200
    page.reload()
    row = page.locator("#totals tbody tr").filter(has=page.get_by_role("cell", name=city, exact=True))
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text("1")
    page.wait_for_function(CHART_LOADED)
    page.screenshot(path=tmp_path / "totals.png", full_page=True)


def test_a_double_click_on_register_registers_once(page, stack):
    # the button is disabled while a registration is in flight; before that, a double click
    # (or an impatient second click on a slow upload) posted the form twice
    city = unique_city()
    posts = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" and "/api/registrations" in r.url else None)
    page.goto("/")
    fill_form(page, "Double Clicker", city, jpeg())
    page.get_by_role("button", name="Register").dblclick()
    expect(page.locator("#result")).to_contain_text("Your registration number is")
    page.wait_for_load_state("networkidle")
    assert len(posts) == 1
    assert stack.db.registrations.count_documents({"city": city}) == 1


def test_a_text_file_named_jpg_shows_the_server_error_in_the_page_and_stores_nothing(page, stack, tmp_path):
    city = unique_city()
    posts = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" and "/api/registrations" in r.url else None)
    page.goto("/")
    fill_form(page, "Browser Tester", city, b"this is not an image, only text\n" * 20, filename="id-card.jpg")
    response = submit(page)
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_photo"

    result = page.locator("#result")
    expect(result).to_have_text(error["message"])
    expect(result).to_have_class("error")
    # what the person typed is kept, so only the photo has to be chosen again
    expect(page.get_by_label("Full name", exact=True)).to_have_value("Browser Tester")
    expect(page.get_by_label("City", exact=True)).to_have_value(city)
    page.screenshot(path=tmp_path / "rejected.png", full_page=True)
    assert len(posts) == 1  # a refused field would be refused again: not retried
    assert stack.db.registrations.count_documents({"city": city}) == 0
    assert stack.db.cities.count_documents({"city": city}) == 0


# ---------------------------------------------------------------- security headers


def test_the_page_sends_a_strict_content_security_policy_and_the_browser_enforces_it(page, policy_violations):
    response = page.goto("/")
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src", "img-src", "form-action"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert "camera=()" in response.headers["permissions-policy"]
    assert "geolocation=()" in response.headers["permissions-policy"]
    page.wait_for_function(CHART_LOADED)
    assert not policy_violations  # the page itself needs nothing inline

    # markup injected into the page can neither run a script nor restyle it
    page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.injected = true";
      document.body.append(script);
      document.body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: rgb(1, 2, 3)">x</p>');
    }""")
    assert page.evaluate("() => window.injected") is None
    assert page.evaluate("() => getComputedStyle(document.getElementById('styled')).color") != "rgb(1, 2, 3)"
    for _ in range(50):  # the reports arrive as events, a moment later
        if any("script-src" in v for v in policy_violations) and any("style-src" in v for v in policy_violations):
            break
        page.wait_for_timeout(100)
    assert any("script-src" in v for v in policy_violations) and any("style-src" in v for v in policy_violations)
    policy_violations.clear()


def test_every_other_answer_gets_the_strictest_policy_and_one_policy_only(page):
    for path in ("/api/chart", "/api/registrations/none", "/nginx-health", "/static/app.js"):
        response = page.request.get(path)
        values = [h["value"] for h in response.headers_array if h["name"].lower() == "content-security-policy"]
        assert len(values) == 1, (path, values)
        assert values[0].startswith("default-src 'none'"), (path, values)
        assert "camera=()" in response.headers["permissions-policy"], path
    page_values = [
        h["value"] for h in page.request.get("/").headers_array if h["name"].lower() == "content-security-policy"
    ]
    assert len(page_values) == 1 and "script-src 'self'" in page_values[0]


# ---------------------------------------------------------------- retries with one Idempotency-Key


def route_posts(page: Page, answer) -> list[dict]:
    """Route the form's POSTs: answer(route, n) handles the n-th (from 0) and returns True, or
    False to let it go on to the real stack. Returns what was seen: each POST's key and time."""
    seen = []

    def handle(route):
        seen.append({"key": route.request.headers.get("idempotency-key"), "at": time.monotonic()})
        if not answer(route, len(seen) - 1):
            route.continue_()

    page.route("**/api/registrations", handle)
    return seen


UNAVAILABLE = {
    "error": {
        "code": "service_unavailable",
        "field": None,
        "message": "The service is unavailable right now; please try again shortly.",
    }
}


def fail_with(status: int, headers: dict | None = None):
    def answer(route, n):
        route.fulfill(
            status=status, content_type="application/json", headers=headers or {}, body=json.dumps(UNAVAILABLE)
        )
        return True

    return answer


def first_only(answer):
    return lambda route, n: n == 0 and answer(route, n)


def register_through(page: Page, answer, name: str) -> tuple[str, list[dict]]:
    """Fill in and send the form under route_posts(answer): (the city used, the POSTs seen)."""
    city = unique_city()
    seen = route_posts(page, answer)
    page.goto("/")
    fill_form(page, name, city, jpeg())
    page.get_by_role("button", name="Register").click()
    return city, seen


def test_a_submission_answered_503_is_retried_with_the_same_key_and_stored_once(page, stack):
    city, seen = register_through(page, first_only(fail_with(503)), "Retry Tester")
    result = page.locator("#result")
    expect(result).to_contain_text("Your registration number is")
    expect(result).to_have_class("ok")

    assert len(seen) == 2
    assert seen[0]["key"] == seen[1]["key"] and KEY_FORMAT.match(seen[0]["key"])
    assert 0.2 <= seen[1]["at"] - seen[0]["at"] <= 3  # about 0.5 s with jitter
    assert stack.db.registrations.count_documents({"city": city}) == 1


def test_a_submission_lost_on_the_network_is_retried_and_the_next_submission_gets_a_new_key(page, stack):
    dropped = first_only(lambda route, n: route.abort("connectionreset") or True)
    city, seen = register_through(page, dropped, "First Person")
    expect(page.locator("#result")).to_contain_text("First Person")
    assert len(seen) == 2 and seen[0]["key"] == seen[1]["key"]

    fill_form(page, "Second Person", city, jpeg())
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#result")).to_contain_text("Second Person")
    assert len(seen) == 3 and seen[2]["key"] != seen[0]["key"] and KEY_FORMAT.match(seen[2]["key"])
    assert stack.db.registrations.count_documents({"city": city}) == 2


def test_a_retry_waits_as_long_as_retry_after_asks(page, stack):
    city, seen = register_through(page, first_only(fail_with(503, {"Retry-After": "3"})), "Patient Person")
    expect(page.locator("#result")).to_contain_text("Your registration number is")
    assert len(seen) == 2 and 2.9 <= seen[1]["at"] - seen[0]["at"] <= 6
    assert stack.db.registrations.count_documents({"city": city}) == 1


def test_after_four_failed_tries_the_page_shows_the_servers_error(page, stack):
    city, seen = register_through(page, fail_with(502), "Unlucky Person")
    result = page.locator("#result")
    expect(result).to_contain_text("retrying…")
    expect(result).to_have_class("pending")
    expect(result).to_have_text(UNAVAILABLE["error"]["message"])
    expect(result).to_have_class("error")
    assert len(seen) == 4 and len({s["key"] for s in seen}) == 1
    assert 1.5 <= seen[-1]["at"] - seen[0]["at"] <= 8  # about 0.5 + 1 + 2 s, with jitter
    # what the person typed is kept for another try
    expect(page.get_by_label("City", exact=True)).to_have_value(city)
    assert stack.db.registrations.count_documents({"city": city}) == 0
