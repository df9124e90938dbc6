"""The web page in a real browser (Debian's Chromium driven by Playwright), through the public nginx.

What a person sees: the form posts, the answer (or the server's error) appears on the page,
the chart image loads and the totals table fills. Data is checked in MongoDB, by id and by a
unique city, never by absolute counts (other tests register at the same time).
"""

import base64
import re
import uuid

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from forms import jpeg

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
CHART_LOADED = """() => {
  const chart = document.getElementById("chart");
  return chart.complete && chart.naturalWidth > 0;
}"""
expect.set_options(timeout=10_000)  # a registration is fast, but the stack is shared with other tests


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack) -> Page:
    context = browser.new_context(base_url=stack.url, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def basic_auth(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def unique_city() -> str:
    return f"Browserville {uuid.uuid4().hex[:12]}"


def fill_form(page: Page, name: str, city: str, photo: bytes, filename: str = "id-card.jpg") -> None:
    page.get_by_label("Full name", exact=True).fill(name)
    page.get_by_label("City", exact=True).fill(city)
    page.get_by_label(re.compile("Photo of your ID card")).set_input_files(
        files=[{"name": filename, "mimeType": "image/jpeg", "buffer": photo}])


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
    report = page.request.get(f"/api/reports/cities.xlsx?city={city}",
                              headers={"Authorization": basic_auth(stack.admin)})
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
    assert stack.db.registrations.count_documents({"city": city}) == 0
    assert stack.db.cities.count_documents({"city": city}) == 0
