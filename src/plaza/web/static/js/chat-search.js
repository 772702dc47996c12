// Message search on the chat page: results take the list's place; picking one opens its conversation
// at that message. Clearing the box brings the list back.
import { api, showError } from "./api.js";
import { $, ago, h } from "./dom.js";

const LIMIT = 50;

// onfound(message): a result was picked.
export function setUpSearch({ list, onfound }) {
  const results = $("#results");

  function showList() {
    $("#convs").hidden = false;
    results.hidden = true;
  }

  // Who wrote it, and where: "Dana" (in a direct conversation with Dana), "Dana in Club", "You to Dana".
  function heading(message) {
    const conv = list.get(message.conversation_id);
    const mine = message.sender.id === list.me.id;
    const who = mine ? "You" : message.sender.display_name;
    if (!conv) return who;
    if (conv.kind === "group") return `${who} in ${list.titleOf(conv)}`;
    return mine ? `You to ${list.titleOf(conv)}` : who;
  }

  function result(message) {
    return h("li", {}, h("button", { type: "button", onclick: () => onfound(message) },
      h("span"),
      h("span", { class: "title", text: heading(message) }),
      h("time", { class: "muted small", datetime: message.created_at, text: ago(message.created_at) }),
      h("span", { class: "last", text: message.content })));
  }

  $("#search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = $("#q").value.trim();
    if (!q) {
      showList();
      return;
    }
    $("#convs").hidden = true;
    results.hidden = false;
    results.replaceChildren(h("li", { class: "muted", text: "Searching…" }));
    try {
      const page = await api("GET", `/api/v1/search/messages?${new URLSearchParams({ q, limit: String(LIMIT) })}`);
      if (q !== $("#q").value.trim()) return; // the box changed meanwhile: a newer search decides
      results.replaceChildren(...(page.items.length ? page.items.map(result)
        : [h("li", { class: "muted", text: "No message matches." })]));
    } catch (failure) {
      results.replaceChildren();
      showError($("#error"), failure);
    }
  });
  $("#q").addEventListener("input", () => {
    if (!$("#q").value.trim()) showList();
  });
}
