// AutoTagger dashboard: plain JavaScript, no dependencies.
(() => {
  "use strict";

  // "Try an example": fill the recipe fields from the examples embedded with json_script.
  function initExamplePicker() {
    const data = document.getElementById("demo-recipes");
    const picker = document.querySelector("[data-example-picker]");
    if (!data || !picker) return;
    const form = picker.closest("form");
    const select = picker.querySelector("select");
    const status = picker.querySelector("[data-example-status]");
    let examples;
    try {
      examples = JSON.parse(data.textContent);
    } catch (error) {
      console.error("Unable to read the demo recipes", error);
      return;
    }
    if (!Array.isArray(examples) || examples.length === 0) return;
    picker.hidden = false;
    select.addEventListener("change", () => {
      const example = examples[Number(select.value)];
      if (select.value === "" || !example) return;
      // form.elements.namedItem, because form.title is the element's own title attribute.
      form.elements.namedItem("title").value = example.title;
      form.elements.namedItem("ingredients").value = example.ingredients.join("\n");
      form.elements.namedItem("instructions").value = example.instructions;
      if (status) status.textContent = `Filled in “${example.title}”.`;
    });
  }

  // Tagging takes a moment: show it is busy and ignore a second click that would create a second run.
  function initBusyForms() {
    document.querySelectorAll("form[data-busy-label]").forEach((form) => {
      const button = form.querySelector("button[type=submit]");
      if (!button) return;
      const idleLabel = button.textContent;
      form.addEventListener("submit", (event) => {
        if (form.getAttribute("aria-busy") === "true") {
          event.preventDefault();
          return;
        }
        form.setAttribute("aria-busy", "true");
        button.setAttribute("aria-disabled", "true");
        button.textContent = form.dataset.busyLabel;
      });
      // Coming back with the Back button restores the page from cache: make the form usable again.
      window.addEventListener("pageshow", () => {
        form.removeAttribute("aria-busy");
        button.removeAttribute("aria-disabled");
        button.textContent = idleLabel;
      });
    });
  }

  initExamplePicker();
  initBusyForms();
})();

// Batch and evaluation jobs still running: poll their progress (the API accepts the browser session) and move the bars.
(function () {
  "use strict";
  function poll(row) {
    fetch(row.dataset.jobUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        row.querySelector("[data-job-counts]").textContent =
          job.done + " done · " + job.failed + " failed · " + job.total + " total";
        row.querySelector("[data-job-bar]").style.width = job.percent + "%";
        row.querySelector("[data-job-percent]").textContent = job.percent + "%";
        // A re-tagging job also says how many recipes' tags it changed.
        var changed = row.querySelector("[data-job-changed]");
        if (changed && job.changed !== undefined) {
          changed.textContent = job.changed + " changed · " + job.unchanged + " unchanged";
        }
        var bar = row.querySelector("[role=progressbar]");
        if (bar) { bar.setAttribute("aria-valuenow", job.percent); }
        var ended = ["finished", "succeeded", "failed", "cancelled"].indexOf(job.status) >= 0;
        if (!ended) { window.setTimeout(function () { poll(row); }, 2000); return; }
        // An evaluation job ends in a report (or an error), a re-tagging job in a summary, that the page shows then.
        if (row.hasAttribute("data-job-reload")) { window.location.reload(); }
      })
      .catch(function () { /* the page keeps the last known progress */ });
  }
  document.querySelectorAll("[data-job-url]").forEach(function (row) { poll(row); });
})();
