// The review page: keyboard moves and decisions, and a search-as-you-type for tags to add. Plain JavaScript,
// no inline handlers (the page stays a plain HTML form without it).
(() => {
  "use strict";

  const form = document.querySelector("[data-review-form]");
  if (!form) return;
  const rows = Array.from(form.querySelectorAll("[data-review-row]"));
  const search = form.querySelector("[data-review-search]");
  const results = form.querySelector("[data-review-results]");
  const addedList = form.querySelector("[data-review-added]");
  const keys = form.querySelector("[data-review-keys]");
  if (keys) keys.hidden = false;
  let current = -1;

  function focusRow(index) {
    if (rows.length === 0) return;
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row, i) => row.classList.toggle("is-current", i === current));
    rows[current].focus();
  }

  function decide(decision) {
    if (current < 0) focusRow(0);
    const input = rows[current] && rows[current].querySelector(`input[data-decision="${decision}"]`);
    if (input) input.checked = true;
  }

  rows.forEach((row, i) => row.addEventListener("focusin", () => {
    current = i;
    rows.forEach((other, j) => other.classList.toggle("is-current", j === i));
  }));

  function typing(target) {
    return target.matches("input[type=text], input[type=search], textarea, select") || target.isContentEditable;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const actions = {
      j: () => focusRow(current + 1),
      k: () => focusRow(current - 1),
      a: () => { decide("accept"); focusRow(current + 1); },
      r: () => { decide("reject"); focusRow(current + 1); },
      u: () => decide("undecided"),
      "/": () => search && search.focus(),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  if (!search || !results || !addedList) return;
  const searchUrl = form.dataset.searchUrl;
  // The server's search covers names and synonyms; the browser's datalist only the values.
  search.removeAttribute("list");
  search.setAttribute("role", "combobox");
  search.setAttribute("aria-autocomplete", "list");
  search.setAttribute("aria-expanded", "false");
  let active = -1;
  let latest = 0;

  function options() { return Array.from(results.querySelectorAll("[role=option]")); }

  function highlight(index) {
    const all = options();
    active = all.length ? (index + all.length) % all.length : -1;
    all.forEach((option, i) => option.setAttribute("aria-selected", i === active ? "true" : "false"));
  }

  function closeResults() {
    results.hidden = true;
    results.replaceChildren();
    search.setAttribute("aria-expanded", "false");
    active = -1;
  }

  function add(tag) {
    if (addedList.querySelector(`input[value="${tag.id}"]`)) { search.value = ""; closeResults(); return; }
    const item = document.createElement("li");
    item.className = "review-added-tag";
    item.dataset.tagId = String(tag.id);
    const hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = "add";
    hidden.value = String(tag.id);
    const label = document.createElement("span");
    label.textContent = `${tag.name} `;
    const path = document.createElement("code");
    path.className = "tag-slug";
    path.textContent = `${tag.category}/${tag.slug}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button button-ghost button-small";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${tag.name}`);
    remove.addEventListener("click", () => { item.remove(); search.focus(); });
    item.append(hidden, label, path, " ", remove);
    addedList.append(item);
    search.value = "";
    closeResults();
  }

  function show(tags) {
    results.replaceChildren();
    tags.forEach((tag) => {
      const option = document.createElement("li");
      option.setAttribute("role", "option");
      option.dataset.tagId = String(tag.id);
      const also = tag.synonyms.length ? ` — also ${tag.synonyms.join(", ")}` : "";
      option.textContent = `${tag.name} (${tag.category_name})${also}`;
      option.addEventListener("mousedown", (event) => { event.preventDefault(); add(tag); });
      option._tag = tag;
      results.append(option);
    });
    results.hidden = tags.length === 0;
    search.setAttribute("aria-expanded", tags.length ? "true" : "false");
    highlight(0);
  }

  let timer = 0;
  search.addEventListener("input", () => {
    window.clearTimeout(timer);
    const query = search.value.trim();
    if (!query) { closeResults(); return; }
    timer = window.setTimeout(() => {
      const request = ++latest;
      fetch(`${searchUrl}?q=${encodeURIComponent(query)}`, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : { tags: [] }))
        .then((data) => { if (request === latest) show(data.tags || []); })
        .catch(() => closeResults());
    }, 150);
  });

  search.addEventListener("keydown", (event) => {
    const all = options();
    if (event.key === "ArrowDown") { event.preventDefault(); highlight(active + 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
    else if (event.key === "Enter") {
      // Enter picks the highlighted tag; with no list open the text goes with the form (the server resolves it).
      if (active >= 0 && all[active]) { event.preventDefault(); add(all[active]._tag); }
    } else if (event.key === "Escape") { closeResults(); search.blur(); }
  });
  search.addEventListener("blur", () => window.setTimeout(closeResults, 100));
})();
