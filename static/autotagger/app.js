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
