// `/app/u/{username}`: a profile with follow, mute and block, and the user's posts.
import { api, clearError, showError } from "./api.js";
import { me } from "./common.js";
import { $ } from "./dom.js";
import { PostList, renderPost } from "./posts.js";

const username = decodeURIComponent(location.pathname.split("/").pop());
const path = `/api/v1/users/${encodeURIComponent(username)}`;
const error = $("#error");
let viewer = null;

const list = new PostList({
  list: $("#posts"),
  sentinel: $("#sentinel"),
  end: $("#end"),
  error,
  render: (post) => renderPost(post, { signedIn: Boolean(viewer), me: viewer }),
  fetchPage: (cursor) => api("GET", `${path}/posts?limit=20${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`),
});

async function counts() {
  const profile = await api("GET", path);
  $("#display_name").textContent = profile.display_name;
  $("#username").textContent = profile.username;
  $("#followers").textContent = String(profile.followers_count);
  $("#following").textContent = String(profile.following_count);
  document.title = `${profile.display_name} (@${profile.username}) · Plaza`;
}

function show(rel) {
  const follow = $("#follow");
  follow.textContent = rel.following ? "Unfollow" : rel.blocking ? "Follow" : "Follow";
  follow.classList.toggle("primary", !rel.following);
  follow.disabled = rel.blocking || rel.blocked_by;
  $("#mute").textContent = rel.muting ? "Unmute" : "Mute";
  $("#mute").setAttribute("aria-pressed", String(rel.muting));
  $("#block").textContent = rel.blocking ? "Unblock" : "Block";
  $("#block").setAttribute("aria-pressed", String(rel.blocking));
  const notes = [];
  if (rel.followed_by) notes.push("Follows you");
  if (rel.muting) notes.push("Muted: their posts stay out of your feed");
  if (rel.blocking) notes.push("Blocked");
  if (rel.blocked_by) notes.push("They blocked you");
  $("#relation").textContent = notes.join(" · ");
  return rel;
}

function toggle(button, kind, isOn) {
  button.addEventListener("click", async () => {
    clearError(error);
    button.disabled = true;
    try {
      const rel = await api(isOn() ? "DELETE" : "POST", `${path}/${kind}`);
      state = show(rel);
      await counts();
    } catch (failure) {
      showError(error, failure);
    } finally {
      button.disabled = kind === "follow" && (state.blocking || state.blocked_by);
    }
  });
}

let state = null;

async function start() {
  try {
    await counts();
  } catch (failure) {
    showError(error, failure);
    return;
  }
  const user = await me();
  viewer = user;
  if (user && user.username !== username) {
    state = show(await api("GET", `${path}/relationship`));
    $("#actions").hidden = false;
    toggle($("#follow"), "follow", () => state.following);
    toggle($("#mute"), "mute", () => state.muting);
    toggle($("#block"), "block", () => state.blocking);
  }
  list.more();
}

start();
