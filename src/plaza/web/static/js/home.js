// `/`: shorten a link, with or without an account.
import { api, clearError, showError } from "./api.js";
import { me } from "./common.js";
import { $ } from "./dom.js";

const form = $("#shorten");
const error = $("#error");

function qrUrl(code, format) {
  return `/api/v1/urls/${encodeURIComponent(code)}/qr?format=${format}`;
}

function show(link) {
  const anchor = $("#short_url");
  anchor.href = link.short_url;
  anchor.textContent = link.short_url;
  $("#long").textContent = link.long_url;
  $("#qr").src = qrUrl(link.short_code, "svg");
  $("#qr_png").href = qrUrl(link.short_code, "png");
  $("#qr_png").download = `${link.short_code}.png`;
  $("#qr_svg").href = qrUrl(link.short_code, "svg");
  $("#qr_svg").download = `${link.short_code}.svg`;
  $("#stats_link").href = `/app/links/${encodeURIComponent(link.short_code)}`;
  $("#copied").textContent = "";
  $("#result").hidden = false;
}

function markInvalid(field) {
  for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  const name = { custom_code: "custom_alias", expiry: "expires_at" }[field] || field;
  const input = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (!input) return;
  input.setAttribute("aria-invalid", "true");
  if (input.closest("details")) $("#options").open = true;
  input.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(error);
  const body = { long_url: form.long_url.value.trim() };
  if (!body.long_url) {
    error.textContent = "Paste a link to shorten.";
    error.hidden = false;
    markInvalid("long_url");
    return;
  }
  if (form.custom_alias.value.trim()) body.custom_alias = form.custom_alias.value.trim();
  if (form.expires_at.value) body.expires_at = form.expires_at.value;
  if (form.max_clicks.value) body.max_clicks = Number(form.max_clicks.value);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    show(await api("POST", "/api/v1/shorten", body));
    markInvalid(null);
    form.reset();
  } catch (failure) {
    showError(error, failure);
    markInvalid(failure.field);
  } finally {
    button.disabled = false;
  }
});

$("#copy").addEventListener("click", async () => {
  const text = $("#short_url").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (a plain-http deployment): select the link so that Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents($("#short_url"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("#copied").textContent = "Selected: press Ctrl+C";
    return;
  }
  $("#copied").textContent = "Copied!";
});

me().then((user) => { $("#signup-hint").hidden = Boolean(user); });
