// `/app/links`: the caller's links; edit the destination, delete, search, page on.
import { api, clearError, showError } from "./api.js";
import { requireUser } from "./common.js";
import { $, formatDate, h } from "./dom.js";

const rows = $("#links tbody");
const error = $("#error");
const more = $("#more");
let cursor = null;
let query = "";
let generation = 0;

async function load(reset) {
  const mine = ++generation;
  if (reset) cursor = null;
  const params = new URLSearchParams({ owner: "me", limit: "20" });
  if (cursor) params.set("cursor", cursor);
  if (query) params.set("q", query);
  try {
    const page = await api("GET", `/api/v1/urls?${params}`);
    if (mine !== generation) return; // a newer search has started
    clearError(error);
    if (reset) rows.replaceChildren();
    rows.append(...page.items.map(row));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    $("#empty").hidden = rows.children.length > 0;
    $("#empty").textContent = query ? "No link matches." : "No links yet.";
  } catch (failure) {
    showError(error, failure);
  }
}

function destination(link) {
  return h("a", { href: link.long_url, rel: "noopener noreferrer", class: "ellipsis", text: link.long_url });
}

function row(link) {
  const cell = h("td", { "data-label": "Destination", class: "dest" }, destination(link));
  const tr = h("tr", { "data-code": link.short_code },
    h("td", { "data-label": "Code" },
      h("a", { href: `/app/links/${encodeURIComponent(link.short_code)}`, text: link.short_code })),
    cell,
    h("td", { "data-label": "Clicks", class: "num", text: String(link.clicks) }),
    h("td", { "data-label": "Created", text: formatDate(link.created_at) }),
    h("td", { "data-label": "Expires",
      text: link.status === "active" ? formatDate(link.expires_at) : link.status }),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "small", onclick: () => edit(link, cell), text: "Edit",
        "aria-label": `Edit destination of ${link.short_code}` }),
      h("button", { type: "button", class: "small danger", onclick: () => remove(link, tr), text: "Delete",
        "aria-label": `Delete ${link.short_code}` })));
  return tr;
}

function edit(link, cell) {
  const input = h("input", { type: "url", value: link.long_url, "aria-label": "New destination" });
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const restore = () => cell.replaceChildren(destination(link));
  const form = h("form", { class: "row inline-edit" }, input,
    h("button", { type: "submit", class: "small", text: "Save" }),
    h("button", { type: "button", class: "small", onclick: restore, text: "Cancel" }), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const changed = await api("PATCH", `/api/v1/urls/${encodeURIComponent(link.short_code)}`,
        { long_url: input.value.trim() });
      Object.assign(link, changed);
      restore();
    } catch (failure) {
      showError(problem, failure);
      input.focus();
    }
  });
  form.addEventListener("keydown", (event) => { if (event.key === "Escape") restore(); });
  cell.replaceChildren(form);
  input.focus();
}

async function remove(link, tr) {
  if (!confirm(`Delete ${link.short_code}? It will stop redirecting, for good.`)) return;
  try {
    await api("DELETE", `/api/v1/urls/${encodeURIComponent(link.short_code)}`);
    tr.remove();
    $("#empty").hidden = rows.children.length > 0;
  } catch (failure) {
    showError(error, failure);
  }
}

let typing;
$("#q").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { query = $("#q").value.trim(); load(true); }, 250);
});
$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  query = $("#q").value.trim();
  load(true);
});
more.addEventListener("click", () => load(false));

requireUser().then(() => load(true));
