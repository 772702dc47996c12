// The chat page's conversation list: unread counts, last messages and presence dots, kept current by the
// API and by frames.
import { api, clearError, showError } from "./api.js";
import { $, ago, h } from "./dom.js";

function lastLine(message) {
  if (!message) return "No messages yet";
  if (message.message_type === "system") return message.content;
  return `${message.sender.display_name}: ${message.content}`;
}

export class ConversationList {
  // onopen(id): a conversation was picked; onchange(conv): one changed (its members, its name).
  constructor({ me, onopen, onchange }) {
    Object.assign(this, { me, onopen, onchange });
    this.convs = new Map(); // id -> conversation as the API describes it, kept current
    this.presence = new Map(); // username -> {status, last_seen}
    this.current = null;
    this.loading = null;
    this.again = false;
  }

  get(id) {
    return this.convs.get(id);
  }

  has(id) {
    return this.convs.has(id);
  }

  others(conv) {
    return conv.members.filter((m) => m.id !== this.me.id);
  }

  titleOf(conv) {
    if (conv.name) return conv.name;
    const names = this.others(conv).map((m) => m.display_name);
    return names.length ? names.join(", ") : "Just you";
  }

  render() {
    const sorted = [...this.convs.values()].sort((a, b) =>
      (b.last_activity_at || "").localeCompare(a.last_activity_at || ""));
    $("#convs").replaceChildren(...sorted.map((conv) => {
      const last = conv.last_message;
      const unread = conv.unread_count && conv.id !== this.current;
      return h("li", {}, h("button", { type: "button", "data-id": conv.id,
        "aria-current": String(conv.id === this.current), onclick: () => this.onopen(conv.id) },
        this.dot(conv),
        h("span", { class: "title", text: this.titleOf(conv) }),
        unread ? h("span", { class: "unread", text: String(conv.unread_count), title: `${conv.unread_count} unread` })
          : h("span"),
        h("span", { class: "last", text: lastLine(last) })));
    }));
  }

  // A direct conversation's dot says whether the other member is online; a group's is plain.
  dot(conv) {
    const partner = conv.kind === "direct" ? this.others(conv)[0] : null;
    if (!partner) return h("span", { class: "dot" });
    const state = this.presence.get(partner.username);
    const online = Boolean(state && state.status === "online");
    const label = online ? "online" : "offline";
    const seen = !online && state && state.last_seen ? `, last seen ${ago(state.last_seen)}` : "";
    return h("span", { class: `dot${online ? " online" : ""}`, role: "img", "aria-label": label,
      title: label + seen });
  }

  // A conversation as the API or a frame describes it. A copy that knows a later message than this
  // one keeps its counts (they already include that message) and takes only the members and name.
  upsert(conv) {
    const known = this.convs.get(conv.id);
    if (known && (known.last_seq || 0) > (conv.last_seq || 0)) {
      Object.assign(known, { kind: conv.kind, name: conv.name, members: conv.members });
    } else if (known) {
      Object.assign(known, conv);
    } else {
      this.convs.set(conv.id, conv);
    }
    this.onchange(this.convs.get(conv.id));
  }

  // Upsert, then show it, with its partner's presence.
  add(conv) {
    this.upsert(conv);
    this.render();
    this.loadPresence();
  }

  drop(id) {
    this.convs.delete(id);
    this.render();
  }

  async load() {
    try {
      const page = await api("GET", "/api/v1/conversations?limit=100");
      page.items.forEach((conv) => this.upsert(conv));
      clearError($("#error"));
      this.render();
      this.loadPresence();
    } catch (failure) {
      showError($("#error"), failure);
    }
  }

  // One list request at a time: calls made meanwhile are answered by a single request after it.
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
    return this.loading;
  }

  // One conversation read again (its members changed); false if the user is no longer in it.
  async reload(id) {
    try {
      this.add(await api("GET", `/api/v1/conversations/${encodeURIComponent(id)}`));
      return true;
    } catch (failure) {
      if (failure.status === 404) return false;
      showError($("#error"), failure);
      return true;
    }
  }

  async loadPresence() {
    const names = new Set();
    for (const conv of this.convs.values()) {
      if (conv.kind === "direct") this.others(conv).forEach((m) => names.add(m.username));
    }
    if (!names.size) return;
    try {
      const states = await api("GET", `/api/v1/presence?users=${encodeURIComponent([...names].join(","))}`);
      for (const [name, state] of Object.entries(states)) this.presence.set(name, state);
      this.render();
    } catch {
      // presence is a nicety: without it the dots stay grey
    }
  }

  onPresence(frame) {
    this.presence.set(frame.user.username, { status: frame.status, last_seen: frame.last_seen });
    this.render();
  }
}
