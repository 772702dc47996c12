// `/app/feed`: compose, the home feed (latest or top), live "new posts" banner, infinite scroll.
import { api, clearError, showError } from "./api.js";
import { requireUser } from "./common.js";
import { $ } from "./dom.js";
import { Live, statusText } from "./live.js";
import { PostList, renderPost } from "./posts.js";

const MAX = 5000;
const form = $("#compose");
const banner = $("#banner");
let mode = "chronological";
let pending = [];
let me = null;

const render = (post) => renderPost(post, { me, onNewPost: (made) => list.prepend([made]) });
const list = new PostList({
  list: $("#posts"),
  sentinel: $("#sentinel"),
  end: $("#end"),
  error: $("#error"),
  render,
  fetchPage: (cursor) => {
    const params = new URLSearchParams({ limit: "20", mode });
    if (cursor) params.set("cursor", cursor);
    return api("GET", `/api/v1/feed?${params}`);
  },
});

function showBanner() {
  pending = pending.filter((post) => !list.ids.has(post.id));
  banner.hidden = pending.length === 0;
  banner.textContent = `${pending.length} new post${pending.length === 1 ? "" : "s"}`;
}

banner.addEventListener("click", () => {
  list.prepend(pending.slice().reverse());
  pending = [];
  showBanner();
  const first = $("#posts").firstElementChild;
  if (first) first.focus();
  scrollTo({ top: 0 });
});

for (const tab of document.querySelectorAll("[data-mode]")) {
  tab.addEventListener("click", () => {
    mode = tab.dataset.mode;
    for (const other of document.querySelectorAll("[data-mode]")) {
      other.setAttribute("aria-pressed", String(other === tab));
    }
    pending = [];
    showBanner();
    list.reset();
  });
}

form.content.addEventListener("input", () => {
  $("#count").textContent = `${form.content.value.length} / ${MAX}`;
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("#compose-error");
  clearError(error);
  const content = form.content.value;
  if (!content.trim()) {
    error.textContent = "Write something first.";
    error.hidden = false;
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const post = await api("POST", "/api/v1/posts", { content });
    list.prepend([post]);
    form.reset();
    $("#count").textContent = `0 / ${MAX}`;
  } catch (failure) {
    showError(error, failure);
  } finally {
    button.disabled = false;
  }
});

// After a reconnect, what arrived meanwhile goes to the banner like live posts do.
async function resync() {
  try {
    const page = await api("GET", "/api/v1/feed?limit=20&mode=chronological");
    pending.push(...page.items.filter((p) => !list.ids.has(p.id) && !pending.some((q) => q.id === p.id)).reverse());
    showBanner();
  } catch {
    // the next reconnect tries again
  }
}

requireUser().then((user) => {
  me = user;
  list.more();
  const live = new Live({
    onframe: (frame) => {
      if (frame.type !== "feed" || frame.post.author.id === user.id) return;
      if (!pending.some((p) => p.id === frame.post.id)) pending.push(frame.post);
      showBanner();
    },
    onstatus: (status) => { $("#live").textContent = statusText(status); },
    onresync: resync,
  });
  live.connect();
});
