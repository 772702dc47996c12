// `/app/links/{code}`: a link's clicks per day, referrers, devices, countries and QR code; refreshed live.
import { api, clearError, showError } from "./api.js";
import "./common.js";
import { $, formatDate, h } from "./dom.js";

const DAYS = 30;
const REFRESH_MS = 5000; // the API counts a click within 5 s
const SVG = "http://www.w3.org/2000/svg";
const code = decodeURIComponent(location.pathname.split("/").pop());

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  el.append(...children);
  return el;
}

function lastDays() {
  const today = new Date();
  const days = [];
  for (let i = DAYS - 1; i >= 0; i--) {
    const day = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    days.push(day.toISOString().slice(0, 10));
  }
  return days;
}

function chart(daily) {
  const counts = new Map(daily.map((d) => [d.date, d.clicks]));
  const days = lastDays();
  const values = days.map((day) => counts.get(day) || 0);
  const top = Math.max(1, ...values);
  const width = 600, height = 150, gap = 2, bar = width / DAYS;
  const total = values.reduce((a, b) => a + b, 0);
  const bars = values.map((value, i) => {
    const tall = Math.max(value ? 2 : 0, (value / top) * (height - 4));
    return svg("rect", { x: i * bar + gap / 2, y: height - tall, width: bar - gap, height: tall, class: "bar" },
      svg("title", {}, `${days[i]}: ${value} click${value === 1 ? "" : "s"}`));
  });
  const axis = svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" });
  $("#chart").replaceChildren(svg("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", preserveAspectRatio: "none",
    "aria-label": `${total} clicks in the last ${DAYS} days; busiest day ${top}.`,
  }, axis, ...bars), h("p", { class: "muted small", text: `${total} clicks; busiest day ${top}` }));
}

function bars(list, items, nameOf) {
  const top = Math.max(1, ...items.map((item) => item.clicks));
  const el = $(list);
  el.replaceChildren(...items.map((item) => {
    const meter = h("span", { class: "meter" });
    meter.style.width = `${(100 * item.clicks) / top}%`;
    return h("li", {}, h("span", { class: "name", text: nameOf(item) }),
      h("span", { class: "num", text: String(item.clicks) }), meter);
  }));
  if (!items.length) el.replaceChildren(h("li", { class: "muted", text: "No clicks yet" }));
}

function qr(stats) {
  const base = `/api/v1/urls/${encodeURIComponent(stats.short_code)}/qr?format=`;
  $("#qr").src = base + "svg";
  $("#qr_png").href = base + "png";
  $("#qr_png").download = `${stats.short_code}.png`;
  $("#qr_svg").href = base + "svg";
  $("#qr_svg").download = `${stats.short_code}.svg`;
}

let shown = false;

async function refresh() {
  try {
    const stats = await api("GET", `/api/v1/stats/${encodeURIComponent(code)}`);
    clearError($("#error"));
    const short = $("#short_url");
    short.href = stats.short_url;
    short.textContent = stats.short_url.replace(/^https?:\/\//, "");
    const long = $("#long_url");
    long.href = stats.long_url;
    long.textContent = stats.long_url;
    $("#clicks").textContent = String(stats.clicks);
    $("#created").textContent = formatDate(stats.created_at, true);
    $("#expires").textContent = stats.status === "active" ? formatDate(stats.expires_at, true) : stats.status;
    $("#last_click").textContent = formatDate(stats.last_clicked_at, true);
    chart(stats.daily);
    bars("#referrers", stats.top_referrers, (r) => r.referrer);
    bars("#devices", stats.devices, (d) => d.device);
    bars("#countries", stats.countries || [], (c) => c.country);
    if (!shown) qr(stats);
    shown = true;
  } catch (failure) {
    showError($("#error"), failure);
  }
}

document.title = `${code} · Statistics · Plaza`;
refresh();
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
