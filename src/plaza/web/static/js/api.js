// The public JSON API, called with the session cookie; every non-GET echoes the CSRF cookie.

export class ApiError extends Error {
  constructor(status, code, message, field, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.retryAfter = retryAfter;
  }
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = cookie("plaza_csrf") || "";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "network", "Plaza cannot be reached. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(response.status, error.code || "http_" + response.status,
      error.message || `The server answered ${response.status}.`, error.field, retry);
  }
  return data;
}

function wait(seconds) {
  if (!seconds) return "later";
  if (seconds < 90) return `in ${seconds} seconds`;
  if (seconds < 5400) return `in ${Math.ceil(seconds / 60)} minutes`;
  return `in ${Math.ceil(seconds / 3600)} hours`;
}

const MESSAGES = {
  invalid_url: "That is not a link we can shorten: use a full http:// or https:// address.",
  redirect_loop: "That is already a Plaza short link; shortening it again would loop.",
  blocked_url: "Links to that site are not allowed here.",
  alias_taken: "That alias is taken. Try another one.",
  alias_reserved: "That alias is reserved for Plaza's own pages. Try another one.",
  invalid_alias: "Aliases are 3-64 letters, digits, - or _.",
  invalid_expiry: "The expiry date is not valid.",
  invalid_max_clicks: "The click limit must be a whole number of at least 1.",
  invalid_credentials: "Wrong username or password.",
  username_taken: "That username is taken.",
  invalid_username: "Usernames are 3-32 characters of a-z, 0-9 and _.",
  invalid_password: "Passwords are 8-256 characters.",
  csrf_failed: "Your session changed in another tab. Reload the page and try again.",
  payload_too_large: "That is too long to send.",
  link_not_found: "This link does not exist or was deleted.",
  not_owner: "Only the link's owner can change it.",
  unauthorized: "Please log in again.",
  not_creator: "Only the group's creator can remove other members.",
  rate_limited: "You are sending too fast. Wait a moment, then send again.",
  database_unavailable: "Plaza's database is briefly unavailable. Try again in a few seconds.",
  service_unavailable: "Plaza is briefly unavailable. Try again in a few seconds.",
  overloaded: "Plaza is busy right now. Try again in a moment.",
  internal_error: "Something went wrong on our side. Try again.",
};

// A sentence for people: ours for the codes we know, else the API's own (always a human sentence).
export function describe(error) {
  if (!(error instanceof ApiError)) return "Something went wrong. Try again.";
  if (error.status === 429 && !error.retryAfter && MESSAGES[error.code]) return MESSAGES[error.code];
  if (error.status === 429) return `Too many attempts. Try again ${wait(error.retryAfter)}.`;
  return MESSAGES[error.code] || error.message;
}

export function showError(element, error) {
  element.textContent = describe(error);
  element.hidden = false;
}

export function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}
