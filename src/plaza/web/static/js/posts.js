// A post as the feed and profile pages show it, its buttons, and a list that loads more on scroll.
import { api, showError } from "./api.js";
import { ago, h } from "./dom.js";

function who(author) {
  return h("a", { class: "who", href: `/app/u/${encodeURIComponent(author.username)}`, text: author.display_name });
}

function byline(post) {
  return h("header", {},
    who(post.author),
    h("span", { class: "muted", text: "@" + post.author.username }),
    h("time", { class: "muted", datetime: post.created_at, title: new Date(post.created_at).toLocaleString(),
      text: "· " + ago(post.created_at) }));
}

function counter(label, count, pressed) {
  const button = h("button", { type: "button", "aria-pressed": pressed === undefined ? null : String(pressed) });
  setCount(button, label, count);
  return button;
}

function setCount(button, label, count) {
  button.dataset.label = label;
  button.dataset.count = String(count);
  button.textContent = `${label} ${count}`;
}

// The viewer's own post (or repost) can be deleted, after a confirmation; it leaves the list, and the
// focus moves to a neighbour so that keyboard users keep their place.
function deleteButton(post, li, problem) {
  const what = post.reposted ? "repost" : "post";
  const button = h("button", { type: "button", class: "delete", text: post.reposted ? "Undo repost" : "Delete" });
  button.addEventListener("click", async () => {
    if (!confirm(`Delete this ${what}? It disappears from every feed.`)) return;
    try {
      await api("DELETE", `/api/v1/posts/${encodeURIComponent(post.id)}`);
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      if (next) next.focus();
    } catch (failure) {
      showError(problem, failure);
    }
  });
  return button;
}

// `post` is what the API returns; for a repost the body shown is the post it reposts. `me`: the
// viewer, whose own posts get a Delete button.
export function renderPost(post, { signedIn = true, me = null, onNewPost = () => {} } = {}) {
  const shown = post.reposted || post;
  const li = h("li", { class: "post", "data-id": post.id, tabindex: "-1" });
  if (post.reposted) {
    li.append(h("p", { class: "context", text: `↻ ${post.author.display_name} reposted` }));
  }
  li.append(byline(shown));
  if (shown.reply_to) li.append(h("p", { class: "context", text: "↳ a reply" }));
  li.append(h("p", { class: "content", text: shown.content }));
  for (const url of shown.media_urls || []) {
    li.append(h("p", { class: "small ellipsis" }, h("a", { href: url, rel: "noopener noreferrer nofollow", text: url })));
  }
  if (!signedIn) return li;

  const reply = counter("Reply", shown.reply_count);
  const repost = counter("Repost", shown.repost_count);
  const like = counter("Like", shown.like_count, false);
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const path = `/api/v1/posts/${encodeURIComponent(shown.id)}`;

  like.addEventListener("click", async () => {
    const liking = like.getAttribute("aria-pressed") !== "true";
    try {
      const updated = await api(liking ? "POST" : "DELETE", `${path}/like`);
      like.setAttribute("aria-pressed", String(liking));
      setCount(like, "Like", updated.like_count);
    } catch (failure) {
      showError(problem, failure);
    }
  });
  repost.addEventListener("click", async () => {
    try {
      const made = await api("POST", `${path}/repost`);
      repost.setAttribute("aria-pressed", "true");
      setCount(repost, "Repost", made.reposted ? made.reposted.repost_count : Number(repost.dataset.count) + 1);
    } catch (failure) {
      showError(problem, failure);
    }
  });
  reply.addEventListener("click", () => {
    const open = li.querySelector(".reply-form");
    if (open) {
      open.remove();
      return;
    }
    const input = h("textarea", { "aria-label": `Reply to ${shown.author.display_name}`, maxlength: "5000", required: true });
    const form = h("form", { class: "reply-form" }, input,
      h("div", { class: "row" }, h("button", { type: "submit", text: "Send reply" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const made = await api("POST", "/api/v1/posts", { content: input.value, reply_to: shown.id });
        setCount(reply, "Reply", Number(reply.dataset.count) + 1);
        form.remove();
        onNewPost(made);
      } catch (failure) {
        showError(problem, failure);
      }
    });
    li.insertBefore(form, problem);
    input.focus();
  });
  const mine = me && post.author.id === me.id ? deleteButton(post, li, problem) : null;
  li.append(h("footer", {}, reply, repost, like, mine), problem);
  return li;
}

// A list filled page by page as its sentinel scrolls into view.
export class PostList {
  constructor({ list, sentinel, end, error, fetchPage, render }) {
    Object.assign(this, { list, sentinel, end, error, fetchPage, render });
    this.ids = new Set();
    this.cursor = null;
    this.done = false;
    this.loading = null;
    this.generation = 0;
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.more();
    }, { rootMargin: "400px" }).observe(sentinel);
  }

  reset() {
    this.generation++;
    this.ids.clear();
    this.list.replaceChildren();
    this.cursor = null;
    this.done = false;
    this.loading = null;
    this.end.hidden = true;
    return this.more();
  }

  more() {
    if (this.done) return Promise.resolve();
    this.loading ??= this.load(this.generation).finally(() => { this.loading = null; });
    return this.loading;
  }

  async load(generation) {
    try {
      const page = await this.fetchPage(this.cursor);
      if (generation !== this.generation) return;
      this.append(page.items);
      this.cursor = page.next_cursor;
      this.done = !page.next_cursor;
      this.end.hidden = !this.done;
      if (!this.done && this.sentinel.getBoundingClientRect().top < innerHeight + 400) {
        queueMicrotask(() => this.more());
      }
    } catch (failure) {
      showError(this.error, failure);
    }
  }

  append(posts) {
    this.list.append(...posts.filter((p) => !this.seen(p)).map(this.render));
  }

  prepend(posts) {
    this.list.prepend(...posts.filter((p) => !this.seen(p)).map(this.render));
  }

  seen(post) {
    if (this.ids.has(post.id)) return true;
    this.ids.add(post.id);
    return false;
  }
}
