// `/app/chat`: conversations, live messages with receipts and typing, history on scroll, search,
// group members. Messages are kept by seq per conversation, so frames that arrive twice (a resend, a
// sync after a reconnect) are shown once and in order.
import { ApiError, api, clearError, showError } from "./api.js";
import { ConversationList } from "./chat-list.js";
import { setUpSearch } from "./chat-search.js";
import { requireUser } from "./common.js";
import { $, ago, h } from "./dom.js";
import { GroupPanel } from "./group.js";
import { Live, statusText } from "./live.js";

const PAGE = 30;
const JUMP_PAGE = 100; // read at once while going back to a message that search found
const TYPING_EVERY_MS = 2000;
const TYPING_IDLE_MS = 3000;
const TYPING_SHOWN_MS = 6000;

let me = null;
let live = null;
let list = null;
let group = null;
const loaded = new Map(); // id -> {messages: Map(seq -> message), oldest, more}
const receipts = new Map(); // id -> {delivered, read}: the furthest any other member reached
const outbox = new Map(); // client_msg_id -> send frame, until acked
const typists = new Map(); // conversation id -> Map(username -> timer)
let current = null;
let found = null; // {id, seq}: the message a search result opened, shown highlighted

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
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
  const hit = found && found.id === message.conversation_id && found.seq === message.seq ? " found" : "";
  if (message.message_type === "system") {
    return h("li", { class: `msg system${hit}`, "data-seq": message.seq, text: message.content });
  }
  const mark = tick(message);
  const mine = message.sender.id === me.id;
  return h("li", { class: `msg${mine ? " mine" : ""}${hit}`, "data-seq": message.seq || "",
    "data-client": message.client_msg_id },
    mine ? null : h("div", { class: "small", text: message.sender.display_name }),
    h("div", { class: "text", text: message.content }),
    h("div", { class: "meta" },
      h("time", { datetime: message.created_at || "", text: message.created_at ? ago(message.created_at) : "" }),
      mark ? h("span", { class: "tick", "aria-label": mark.label, title: mark.label, text: " " + mark.text }) : null));
}

function renderMessages({ keepBottom = true, keepOffset = false } = {}) {
  if (!current || !loaded.has(current)) return;
  const box = $("#messages");
  const state = loaded.get(current);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  const pending = [...outbox.values()].filter((f) => f.conversation_id === current)
    .map((f) => ({ ...f, seq: 0, sender: me, message_type: "text", created_at: null }));
  box.replaceChildren(...sorted.map(renderMessage), ...pending.map(renderMessage));
  if (keepOffset) box.scrollTop = box.scrollHeight - fromBottom;
  else if (keepBottom && atBottom) box.scrollTop = box.scrollHeight;
}

function showHeader(conv) {
  $("#title").textContent = list.titleOf(conv);
  group.show(conv);
}

// Opens a conversation at its newest message, or (`seq`) at one that search found.
async function open(id, { seq = null } = {}) {
  current = id;
  list.current = id;
  found = seq ? { id, seq } : null;
  $("#chat").classList.add("open");
  showHeader(list.get(id));
  $("#sendbox").hidden = false;
  $("#notice").hidden = true;
  $("#typing").textContent = "";
  if (!loaded.has(id)) loaded.set(id, { messages: new Map(), oldest: null, more: true });
  const state = loaded.get(id);
  if (!state.oldest) await older(id);
  while (seq && state.more && state.oldest > seq && current === id) {
    if (!(await older(id, JUMP_PAGE))) break;
  }
  if (current !== id) return;
  renderMessages();
  const box = $("#messages");
  const hit = seq && box.querySelector(`[data-seq="${seq}"]`);
  if (hit) hit.scrollIntoView({ block: "center" });
  else box.scrollTop = box.scrollHeight;
  markRead();
  list.render();
  showTyping();
  $("#text").focus({ preventScroll: true });
}

// The page of messages before the oldest one held; false if it could not be read.
async function older(id, limit = PAGE) {
  const state = loaded.get(id);
  if (!state.more || state.loading) return false;
  state.loading = true;
  try {
    const params = new URLSearchParams({ limit: String(limit) });
    if (state.oldest) params.set("before_seq", String(state.oldest));
    const page = await api("GET", `/api/v1/conversations/${encodeURIComponent(id)}/messages?${params}`);
    for (const message of page.items) state.messages.set(message.seq, message);
    if (page.items.length) state.oldest = page.items[0].seq;
    state.more = Boolean(page.next_cursor);
    return true;
  } catch (failure) {
    showError($("#error"), failure);
    return false;
  } finally {
    state.loading = false;
  }
}

function markRead() {
  const conv = list.get(current);
  if (!conv || document.hidden) return;
  const state = loaded.get(current);
  const top = Math.max(0, ...state.messages.keys());
  if (top && (conv.unread_count || conv.read_sent !== top)) {
    live.send({ type: "read", conversation_id: current, seq: top });
    conv.read_sent = top;
  }
  conv.unread_count = 0;
}

// The user left or was removed: the conversation leaves the list; if it is on screen, its history
// stays readable with a note saying so, and the composer goes.
function leftConversation(id, note) {
  list.drop(id);
  loaded.delete(id);
  if (id !== current) return;
  $("#sendbox").hidden = true;
  group.show(null);
  $("#notice").textContent = note;
  $("#notice").hidden = false;
}

// --- frames --------------------------------------------------------------------------------------------

// A message past the conversation's last_seq is new to the page and counts once as unread; one seen
// again (a replay after a reconnect, or one the list was loaded with) counts no more.
function onMessage(message) {
  const id = message.conversation_id;
  const conv = list.get(id);
  if (!conv) {
    list.refresh();
    return;
  }
  const state = loaded.get(id);
  if (state) state.messages.set(message.seq, message);
  if (message.client_msg_id) outbox.delete(message.client_msg_id);
  const fresh = message.seq > (conv.last_seq || 0);
  if (fresh) {
    conv.last_seq = message.seq;
    conv.last_message = message;
    conv.last_activity_at = message.created_at;
  }
  if (message.message_type === "system" && fresh) membersChanged(id, message.sender.id === me.id);
  if (message.sender.id !== me.id && fresh) {
    live.send({ type: "delivered", conversation_id: id, seq: message.seq });
    clearTypist(id, message.sender.username);
    if (id === current && !document.hidden) markRead();
    else conv.unread_count = (conv.unread_count || 0) + 1;
  }
  if (id === current) renderMessages();
  list.render();
}

// A `system` message records a change of members: the conversation is read again. One of the user's
// own (`mine`) that leaves them out is their leaving, from this page or another device: it says so,
// whether it arrives before or after this page's own answer to the leave.
async function membersChanged(id, mine) {
  if (await list.reload(id)) return;
  leftConversation(id, mine ? "You left this conversation." : "You are no longer a member of this conversation.");
}

function onReceipt(frame) {
  if (frame.user.id === me.id) {
    const conv = list.get(frame.conversation_id);
    if (frame.status === "read" && conv) {
      conv.unread_count = 0; // read on another device
      list.render();
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

// A send the server refused (`ref` names it): it leaves the outbox, and its text goes back in the box.
function onError(frame) {
  const refused = frame.ref && outbox.get(frame.ref);
  if (!refused) return;
  outbox.delete(frame.ref);
  if (refused.conversation_id === current && !$("#text").value) $("#text").value = refused.content;
  const status = frame.code === "rate_limited" ? 429 : 400;
  showError($("#error"), new ApiError(status, frame.code, frame.message));
  renderMessages();
}

function onFrame(frame) {
  if (frame.type === "message" || frame.type === "ack") onMessage(frame.message);
  else if (frame.type === "conversation") list.add(frame.conversation);
  else if (frame.type === "receipt") onReceipt(frame);
  else if (frame.type === "typing") onTyping(frame);
  else if (frame.type === "presence") list.onPresence(frame);
  else if (frame.type === "synced") onSynced(frame);
  else if (frame.type === "error") onError(frame);
}

// After a reconnect: resend what was never acked (same client_msg_id: stored once), then ask for
// everything after the last seq held: in an opened conversation its newest message, elsewhere the
// last one the list knows of. What was missed arrives as `message` frames, then `synced`.
function resync() {
  for (const frame of outbox.values()) live.send(frame);
  const cursors = {};
  for (const [id, conv] of list.convs) cursors[id] = conv.last_seq || 0;
  for (const [id, state] of loaded) cursors[id] = Math.max(0, ...state.messages.keys());
  live.send({ type: "sync", cursors });
}

// The replay is over (with `more`, another round follows); the list is then read again, for its
// counts and the conversations made meanwhile.
function onSynced(frame) {
  if (frame.more) live.send({ type: "sync", cursors: frame.cursors });
  else list.refresh();
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
  const box = $("#messages");
  box.scrollTop = box.scrollHeight;
});

$("#messages").addEventListener("scroll", async () => {
  if ($("#messages").scrollTop > 60 || !current || !loaded.has(current)) return;
  const id = current;
  const before = loaded.get(id).oldest;
  await older(id);
  if (id === current && loaded.has(id) && loaded.get(id).oldest !== before) renderMessages({ keepOffset: true });
});

// --- new conversation, search, navigation -------------------------------------------------------

$("#new-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const members = form.members.value.split(/[\s,]+/).map((m) => m.replace(/^@/, "").trim()).filter(Boolean);
  const name = form.group_name.value.trim();
  try {
    const conv = await api("POST", "/api/v1/conversations", { members, ...(name ? { name } : {}) });
    list.add(conv);
    form.reset();
    $("#new").open = false;
    clearError($("#new-error"));
    await open(conv.id);
  } catch (failure) {
    showError($("#new-error"), failure);
  }
});

// A result may lie in a conversation beyond the list's first page: that one is read first.
async function openFound(message) {
  const id = message.conversation_id;
  if (!list.has(id) && !(await list.reload(id))) {
    showError($("#error"), new ApiError(404, "conversation_not_found", "You are no longer in that conversation."));
    return;
  }
  await open(id, { seq: message.seq });
}

$("#back").addEventListener("click", () => {
  const was = current;
  current = null;
  list.current = null;
  $("#chat").classList.remove("open");
  list.render();
  const item = was && $(`#convs [data-id="${CSS.escape(was)}"]`);
  if (item) item.focus();
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && current && loaded.has(current)) {
    markRead();
    list.render();
  }
});

requireUser().then(async (user) => {
  me = user;
  list = new ConversationList({
    me,
    onopen: (id) => open(id),
    onchange: (conv) => { if (conv.id === current) showHeader(conv); },
  });
  group = new GroupPanel({
    me,
    titleOf: (conv) => list.titleOf(conv),
    onchange: (conv) => list.add(conv),
    onleft: (id) => leftConversation(id, "You left this conversation."),
  });
  setUpSearch({ list, onfound: openFound });
  live = new Live({
    onframe: onFrame,
    onstatus: (status) => { $("#live").textContent = statusText(status); },
    onresync: resync,
  });
  live.connect();
  await list.load();
  const wanted = new URLSearchParams(location.search).get("c");
  if (wanted && list.has(wanted)) open(wanted);
});
