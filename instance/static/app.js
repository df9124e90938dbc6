// Progressive enhancement: without JavaScript the form still posts and the API answers JSON.
const form = document.getElementById("registration");
const result = document.getElementById("result");
const submitButton = form.querySelector('button[type="submit"]');

// ok: true (done), false (failed) or null (still trying)
function show(text, ok) {
  result.textContent = text;
  result.className = ok === null ? "pending" : ok ? "ok" : "error";
}

async function loadChart() {
  document.getElementById("chart").src = "/api/chart.png?t=" + Date.now();
  try {
    const response = await fetch("/api/chart");
    const chart = await response.json();
    const body = document.querySelector("#totals tbody");
    body.replaceChildren(...chart.cities.map(({ city, total }) => {
      const row = document.createElement("tr");
      for (const value of [city, total]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      return row;
    }));
    document.getElementById("chart-meta").textContent =
      `Totals as of ${new Date(chart.generated_at).toLocaleString()}; refreshed whenever a report is generated.`;
  } catch (error) {
    document.getElementById("chart-meta").textContent = "The totals could not be loaded.";
  }
}

// A failed submission is sent again with the same Idempotency-Key, so the server stores it at
// most once however many of the tries reached it. Only answers that say "not now" are retried:
// a 4xx (bad field, too large, throttled) would fail the same way again.
const RETRY_STATUSES = new Set([502, 503, 504]);
const RETRY_DELAYS_MS = [500, 1000, 2000]; // before the 2nd, 3rd and 4th try
const MAX_RETRY_AFTER_MS = 5000;

function newIdempotencyKey() {
  // crypto.randomUUID exists only in secure contexts; a plain-http deployment is not one
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function retryDelay(attempt, response) {
  const base = RETRY_DELAYS_MS[attempt];
  let delay = base / 2 + Math.random() * base; // jitter, so clients failed together do not return together
  const retryAfter = response ? Number(response.headers.get("Retry-After")) : NaN;
  if (retryAfter > 0) delay = Math.max(delay, Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS));
  return delay;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function postRegistration(body, key) {
  for (let attempt = 0; ; attempt++) {
    let response = null;
    try {
      response = await fetch(form.action, { method: "POST", body, headers: { "Idempotency-Key": key } });
    } catch (error) {
      response = null; // no answer at all: the request may or may not have arrived
    }
    const retryable = response === null || RETRY_STATUSES.has(response.status);
    if (!retryable || attempt === RETRY_DELAYS_MS.length) return response;
    show(`No answer from the service yet; retrying… (try ${attempt + 2} of ${RETRY_DELAYS_MS.length + 1})`, null);
    await sleep(retryDelay(attempt, response));
  }
}

async function errorMessage(response) {
  try {
    const answer = await response.json();
    if (answer.error && answer.error.message) return answer.error.message;
  } catch (error) {
    // not JSON: fall through to the status
  }
  return `The registration failed (HTTP ${response.status}).`;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (submitButton.disabled) return;
  // one registration per click: a second click while the first is in flight would register twice
  submitButton.disabled = true;
  show("Sending…", true);
  try {
    // one key per submission, kept across its retries; the next submission gets a new one
    const response = await postRegistration(new FormData(form), newIdempotencyKey());
    if (response === null) {
      show("The service could not be reached. Please try again.", false);
    } else if (response.status === 201) {
      const answer = await response.json();
      show(`Registered: ${answer.name} (${answer.city}). Your registration number is ${answer.id}.`, true);
      form.reset();
      loadChart();
    } else {
      show(await errorMessage(response), false);
    }
  } catch (error) {
    show("The service could not be reached. Please try again.", false);
  } finally {
    submitButton.disabled = false;
  }
});

loadChart();
