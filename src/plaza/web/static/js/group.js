// The members of a group conversation: see who is in it, add people, remove someone (the server lets
// only the group's creator do that, and says so otherwise), or leave.
import { api, clearError, showError } from "./api.js";
import { $, h } from "./dom.js";

export class GroupPanel {
  // onchange(conversation): its members changed; onleft(id): the user is no longer in it.
  constructor({ me, titleOf, onchange, onleft }) {
    Object.assign(this, { me, titleOf, onchange, onleft });
    this.conv = null;
    $("#members-toggle").addEventListener("click", () => this.toggle($("#group").hidden));
    $("#add-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    $("#leave").addEventListener("click", () => this.leave());
  }

  // The conversation on screen (or null): the panel is offered for groups only.
  show(conv) {
    const group = conv && conv.kind === "group" ? conv : null;
    if (!group || !this.conv || group.id !== this.conv.id) {
      this.toggle(false);
      clearError($("#group-error"));
    }
    this.conv = group;
    $("#members-toggle").hidden = !group;
    if (!group) return;
    $("#members-toggle").textContent = `Members (${group.members.length})`;
    $("#member-list").replaceChildren(...group.members.map((member) => this.member(member)));
  }

  member(member) {
    const you = member.id === this.me.id;
    return h("li", { class: "row spread" },
      h("span", {}, h("strong", { text: member.display_name }), " ",
        h("span", { class: "muted", text: "@" + member.username })),
      you
        ? h("span", { class: "muted small", text: "you" })
        : h("button", { type: "button", class: "small danger", text: "Remove",
          "aria-label": `Remove ${member.display_name}`, onclick: () => this.remove(member) }));
  }

  toggle(open) {
    $("#group").hidden = !open;
    $("#members-toggle").setAttribute("aria-expanded", String(open));
  }

  path(...parts) {
    return `/api/v1/conversations/${[this.conv.id, ...parts].map(encodeURIComponent).join("/")}`;
  }

  async add() {
    const input = $("#add");
    const members = input.value.split(/[\s,]+/).map((m) => m.replace(/^@/, "")).filter(Boolean);
    if (!members.length || !this.conv) return;
    try {
      const conv = await api("POST", this.path("members"), { members });
      input.value = "";
      clearError($("#group-error"));
      this.onchange(conv);
    } catch (failure) {
      showError($("#group-error"), failure);
      input.focus();
    }
  }

  async remove(member) {
    const conv = this.conv;
    if (!conv || !confirm(`Remove ${member.display_name} from ${this.titleOf(conv)}?`)) return;
    try {
      await api("DELETE", this.path("members", member.username));
      clearError($("#group-error"));
      this.onchange({ ...conv, members: conv.members.filter((m) => m.id !== member.id) });
    } catch (failure) {
      showError($("#group-error"), failure);
    }
  }

  async leave() {
    const conv = this.conv;
    if (!conv || !confirm(`Leave ${this.titleOf(conv)}? Its new messages will no longer reach you.`)) return;
    try {
      await api("DELETE", this.path("members", this.me.username));
      this.onleft(conv.id);
    } catch (failure) {
      showError($("#group-error"), failure);
    }
  }
}
