// `/app/login` and `/app/register`.
import { api, clearError, showError } from "./api.js";
import "./common.js";
import { $, nextPath } from "./dom.js";

const form = $("#auth-form");
const error = $("#error");
const registering = document.body.dataset.page === "register";
const next = nextPath("/app/feed");

if (location.search) $("#switch").href += location.search;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(error);
  const username = form.username.value.trim().toLowerCase();
  const password = form.password.value;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    if (registering) {
      const display = form.display_name.value.trim();
      await api("POST", "/api/v1/users", { username, password, display_name: display || null });
    }
    await api("POST", "/api/v1/auth/session", { username, password });
    location.assign(next);
  } catch (failure) {
    showError(error, failure);
    const input = failure.field && form.querySelector(`[name="${CSS.escape(failure.field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    button.disabled = false;
  }
});
