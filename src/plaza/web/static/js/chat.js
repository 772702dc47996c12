// `/app/chat`: conversations, live messages with receipts and typing, history on scroll, search.
// Messages are kept by seq per conversation, so frames that arrive twice (a resend, a sync after a
// reconnect) are shown once and in order.
import { api, clearError, showError } from "./api.js";
import { requireUser } from "./common.js";
import { $, ago, h } from "./dom.js";
import { Live, statusText } from "./live.js";

const PAGE = 30;
const TYPING_EVERY_MS = 2000;
const TYPING_IDLE_MS = 3000;
const TYPING_SHOWN_MS = 6000;

let me = null;
let live = null;
const convs = new Map(); // id -> conversation from the API, kept current
const loaded = new Map(); // id -> {messages: Map(seq -> message), oldest, more}
const receipts = new Map(); // id -> {delivered, read}: the furthest any other member reached
const outbox = new Map(); // client_msg_id -> send frame, until acked
const typists = new Map(); // conversation id -> Map(username -> timer)
const presence = new Map(); // username -> "online" | "offline"
let current = null;

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function others(conv) {
  return conv.members.filter((m) => m.id !== me.id);
}

function titleOf(conv) {
  if (conv.name) return conv.name;
  const names = others(conv).map((m) => m.display_name);
  return names.length ? names.join(", ") : "Just you";
}

// --- the conversation list ---------------------------------------------------------------------

function renderList() {
  const sorted = [...convs.values()].sort((a, b) =>
    (b.last_activity_at || "").localeCompare(a.last_activity_at || ""));
  $("#convs").replaceChildren(...sorted.map((conv) => {
    const partner = conv.kind === "direct" ? others(conv)[0] : null;
    const online = partner && presence.get(partner.username) === "online";
    const last = conv.last_message;
    const button = h("button", { type: "button", "data-id": conv.id, "aria-current": String(conv.id === current),
      onclick: () => open(conv.id) },
      h("span", { class: `dot${online ? " online" : ""}`, title: partner ? (online ? "online" : "offline") : "group",
        "aria-label": partner ? (online ? "online" : "offline") : null }),
      h("span", { class: "title", text: titleOf(conv) }),
      conv.unread_count && conv.id !== current
        ? h("span", { class: "unread", text: String(conv.unread_count), "aria-label": `${conv.unread_count} unread` })
        : h("span"),
      h("span", { class: "last", text: last ? `${last.sender.display_name}: ${last.content}` : "No messages yet" }));
    return h("li", {}, button);
  }));
}

async function loadConversations() {
  try {
    const page = await api("GET", "/api/v1/conversations?limit=100");
    for (const conv of page.items) convs.set(conv.id, conv);
    clearError($("#error"));
    renderList();
    loadPresence();
  } catch (failure) {
    showError($("#error"), failure);
  }
}

async function loadPresence() {
  const names = new Set();
  for (const conv of convs.values()) if (conv.kind === "direct") others(conv).forEach((m) => names.add(m.username));
  if (!names.size) return;
  try {
    const found = await api("GET", `/api/v1/presence?users=${encodeURIComponent([...names].join(","))}`);
    for (const [name, state] of Object.entries(found)) presence.set(name, state.status);
    renderList();
  } catch {
    // presence is a nicety: without it the dots stay grey
  }
}

// --- one conversation ------------------------------------------------------------------------------

function tick(message) {
  if (message.sender.id !== me.id) return null;
  if (!message.seq) return { text: "…", label: "Sending" };
  const seen = receipts.get(message.conversation_id) || { delivered: 0, read: 0 };
  if (seen.read >= message.seq) return { text: "✓✓ Read", label: "Read" };
  if (seen.delivered >= message.seq) return { text: "✓✓", label: "Delivered" };
  return { text: "✓", label: "Sent" };
}

function renderMessage(message) {
  if (message.message_type === "system") {
    return h("li", { class: "msg system", "data-seq": message.seq, text: message.content });
  }
  const mark = tick(message);
  const mine = message.sender.id === me.id;
  return h("li", { class: `msg${mine ? " mine" : ""}`, "data-seq": message.seq || "", "data-client": message.client_msg_id },
    mine ? null : h("div", { class: "small", text: message.sender.display_name }),
    h("div", { class: "text", text: message.content }),
    h("div", { class: "meta" },
      h("time", { datetime: message.created_at || "", text: message.created_at ? ago(message.created_at) : "" }),
      mark ? h("span", { class: "tick", "aria-label": mark.label, title: mark.label, text: " " + mark.text }) : null));
}

function renderMessages({ keepBottom = true, keepOffset = false } = {}) {
  if (!current) return;
  const list = $("#messages");
  const state = loaded.get(current);
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  const pending = [...outbox.values()].filter((f) => f.conversation_id === current)
    .map((f) => ({ ...f, seq: 0, sender: me, message_type: "text", created_at: null }));
  list.replaceChildren(...sorted.map(renderMessage), ...pending.map(renderMessage));
  if (keepOffset) list.scrollTop = list.scrollHeight - fromBottom;
  else if (keepBottom && atBottom) list.scrollTop = list.scrollHeight;
}

async function open(id) {
  current = id;
  const conv = convs.get(id);
  $("#chat").classList.add("open");
  $("#title").textContent = titleOf(conv);
  $("#sendbox").hidden = false;
  $("#typing").textContent = "";
  if (!loaded.has(id)) {
    loaded.set(id, { messages: new Map(), oldest: null, more: true });
    await older(id);
  }
  renderMessages();
  const list = $("#messages");
  list.scrollTop = list.scrollHeight;
  markRead();
  renderList();
  showTyping();
  $("#text").focus();
}

async function older(id) {
  const state = loaded.get(id);
  if (!state.more || state.loading) return;
  state.loading = true;
  try {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state.oldest) params.set("before_seq", String(state.oldest));
    const page = await api("GET", `/api/v1/conversations/${encodeURIComponent(id)}/messages?${params}`);
    for (const message of page.items) state.messages.set(message.seq, message);
    if (page.items.length) state.oldest = page.items[0].seq;
    state.more = Boolean(page.next_cursor);
  } catch (failure) {
    showError($("#error"), failure);
  } finally {
    state.loading = false;
  }
}

function markRead() {
  const conv = convs.get(current);
  if (!conv || document.hidden) return;
  const state = loaded.get(current);
  const top = Math.max(0, ...state.messages.keys());
  if (top && (conv.unread_count || conv.read_sent !== top)) {
    live.send({ type: "read", conversation_id: current, seq: top });
    conv.read_sent = top;
  }
  conv.unread_count = 0;
}

// --- frames --------------------------------------------------------------------------------------------

function onMessage(message) {
  const id = message.conversation_id;
  if (!convs.has(id)) {
    loadConversations();
    return;
  }
  const conv = convs.get(id);
  const state = loaded.get(id);
  const fresh = !state || !state.messages.has(message.seq);
  if (state) state.messages.set(message.seq, message);
  if (message.client_msg_id) outbox.delete(message.client_msg_id);
  if (message.seq > (conv.last_seq || 0)) {
    conv.last_seq = message.seq;
    conv.last_message = message;
    conv.last_activity_at = message.created_at;
  }
  if (message.sender.id !== me.id && fresh) {
    live.send({ type: "delivered", conversation_id: id, seq: message.seq });
    clearTypist(id, message.sender.username);
    if (id === current && !document.hidden) markRead();
    else conv.unread_count = (conv.unread_count || 0) + 1;
  }
  if (id === current) renderMessages();
  renderList();
}

function onReceipt(frame) {
  if (frame.user.id === me.id) {
    if (frame.status === "read" && convs.has(frame.conversation_id)) {
      convs.get(frame.conversation_id).unread_count = 0; // read on another device
      renderList();
    }
    return;
  }
  const seen = receipts.get(frame.conversation_id) || { delivered: 0, read: 0 };
  seen[frame.status] = Math.max(seen[frame.status], frame.seq);
  if (frame.status === "read") seen.delivered = Math.max(seen.delivered, frame.seq);
  receipts.set(frame.conversation_id, seen);
  if (frame.conversation_id === current) renderMessages();
}

function clearTypist(id, username) {
  const names = typists.get(id);
  if (names && names.has(username)) {
    clearTimeout(names.get(username));
    names.delete(username);
    showTyping();
  }
}

function onTyping(frame) {
  if (frame.user.id === me.id) return;
  const id = frame.conversation_id;
  clearTypist(id, frame.user.username);
  if (frame.state === "start") {
    const names = typists.get(id) || new Map();
    names.set(frame.user.username, setTimeout(() => clearTypist(id, frame.user.username), TYPING_SHOWN_MS));
    names.display ??= new Map();
    names.display.set(frame.user.username, frame.user.display_name);
    typists.set(id, names);
  }
  showTyping();
}

function showTyping() {
  const names = current && typists.get(current);
  const who = names ? [...names.keys()].map((n) => names.display.get(n) || n) : [];
  $("#typing").textContent = who.length === 0 ? ""
    : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
}

function onFrame(frame) {
  if (frame.type === "message") onMessage(frame.message);
  else if (frame.type === "ack") onMessage(frame.message);
  else if (frame.type === "receipt") onReceipt(frame);
  else if (frame.type === "typing") onTyping(frame);
  else if (frame.type === "presence") {
    presence.set(frame.user.username, frame.status);
    renderList();
  }
}

// After a reconnect: resend what was never acked (same client_msg_id: stored once), then ask for
// everything after the last seq held in each open conversation.
function resync() {
  for (const frame of outbox.values()) live.send(frame);
  const cursors = {};
  for (const [id, state] of loaded) cursors[id] = Math.max(0, ...state.messages.keys());
  live.send({ type: "sync", cursors });
  loadConversations();
}

// --- sending and typing ----------------------------------------------------------------------------

let typingSentAt = 0;
let typingIdle = null;

function typing(state) {
  if (!current) return;
  live.send({ type: "typing", conversation_id: current, state });
}

$("#text").addEventListener("input", () => {
  if (Date.now() - typingSentAt > TYPING_EVERY_MS) {
    typing("start");
    typingSentAt = Date.now();
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => { typing("stop"); typingSentAt = 0; }, TYPING_IDLE_MS);
});

$("#text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("#sendbox").requestSubmit();
  }
});

$("#sendbox").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = $("#text").value;
  if (!content.trim() || !current) return;
  const frame = { type: "send", client_msg_id: uuid(), conversation_id: current, content, message_type: "text" };
  outbox.set(frame.client_msg_id, frame);
  live.send(frame); // if the socket is down, resync() sends it once back
  $("#text").value = "";
  clearTimeout(typingIdle);
  typing("stop");
  typingSentAt = 0;
  renderMessages();
  const list = $("#messages");
  list.scrollTop = list.scrollHeight;
});

$("#messages").addEventListener("scroll", async () => {
  if ($("#messages").scrollTop > 60 || !current) return;
  const id = current;
  const before = loaded.get(id).oldest;
  await older(id);
  if (id === current && loaded.get(id).oldest !== before) renderMessages({ keepOffset: true });
});

// --- new conversation, search, navigation -------------------------------------------------------

$("#new-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const members = form.members.value.split(/[\s,]+/).map((m) => m.replace(/^@/, "").trim()).filter(Boolean);
  const name = form.group_name.value.trim();
  try {
    const conv = await api("POST", "/api/v1/conversations", { members, ...(name ? { name } : {}) });
    convs.set(conv.id, conv);
    form.reset();
    $("#new").open = false;
    clearError($("#new-error"));
    loadPresence();
    await open(conv.id);
  } catch (failure) {
    showError($("#new-error"), failure);
  }
});

$("#search").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("#q").value.trim();
  const results = $("#results");
  $("#convs").hidden = Boolean(q);
  results.hidden = !q;
  if (!q) return;
  try {
    const page = await api("GET", `/api/v1/search/messages?q=${encodeURIComponent(q)}`);
    results.replaceChildren(...(page.items.length ? page.items.map((m) => h("li", {},
      h("button", { type: "button", onclick: () => open(m.conversation_id) },
        h("span"), h("span", { class: "title", text: m.sender.display_name }), h("span"),
        h("span", { class: "last", text: m.content })))) : [h("li", { class: "muted", text: "No message matches." })]));
  } catch (failure) {
    results.replaceChildren(h("li", { class: "error", text: failure.status === 404
      ? "Search is not available on this server." : failure.message }));
  }
});
$("#q").addEventListener("search", () => { if (!$("#q").value) $("#search").requestSubmit(); });

$("#back").addEventListener("click", () => {
  current = null;
  $("#chat").classList.remove("open");
  renderList();
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && current) {
    markRead();
    renderList();
  }
});

requireUser().then(async (user) => {
  me = user;
  live = new Live({
    onframe: onFrame,
    onstatus: (status) => { $("#live").textContent = statusText(status); },
    onresync: resync,
  });
  live.connect();
  await loadConversations();
  const wanted = new URLSearchParams(location.search).get("c");
  if (wanted && convs.has(wanted)) open(wanted);
});
