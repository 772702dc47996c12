// What every page shares: the account area of the header and the current user.
import { api } from "./api.js";
import { $, h } from "./dom.js";

let current;

// The logged-in user, or null. Asked once per page.
export function me() {
  current ??= api("GET", "/api/v1/me").catch(() => null);
  return current;
}

// The user, or off to the login page (which comes back here afterwards).
export async function requireUser() {
  const user = await me();
  if (!user) {
    location.assign("/app/login?next=" + encodeURIComponent(location.pathname + location.search));
    return new Promise(() => {});
  }
  return user;
}

async function logout() {
  try {
    await api("DELETE", "/api/v1/auth/session");
  } finally {
    location.assign("/");
  }
}

async function header() {
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page || (page === "stats" && link.dataset.nav === "links")) {
      link.setAttribute("aria-current", "page");
    }
  }
  const box = $("#account");
  const user = await me();
  box.replaceChildren(...(user
    ? [
        h("a", { href: `/app/u/${encodeURIComponent(user.username)}`, id: "whoami", text: "@" + user.username }),
        h("button", { type: "button", class: "link", id: "logout", onclick: logout, text: "Log out" }),
      ]
    : [h("a", { href: "/app/login", text: "Log in" }), h("a", { href: "/app/register", text: "Register" })]));
}

header();
