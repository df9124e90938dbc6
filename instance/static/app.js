// Progressive enhancement: without JavaScript the form still posts and the API answers JSON.
const form = document.getElementById("registration");
const result = document.getElementById("result");
const submitButton = form.querySelector('button[type="submit"]');

function show(text, ok) {
  result.textContent = text;
  result.className = ok ? "ok" : "error";
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

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (submitButton.disabled) return;
  // one registration per click: a second click while the first is in flight would register twice
  submitButton.disabled = true;
  show("Sending…", true);
  try {
    const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
    const answer = await response.json();
    if (response.status === 201) {
      show(`Registered: ${answer.name} (${answer.city}). Your registration number is ${answer.id}.`, true);
      form.reset();
      loadChart();
    } else {
      show(answer.error ? answer.error.message : `The registration failed (HTTP ${response.status}).`, false);
    }
  } catch (error) {
    show("The service could not be reached. Please try again.", false);
  } finally {
    submitButton.disabled = false;
  }
});

loadChart();
