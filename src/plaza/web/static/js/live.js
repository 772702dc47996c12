// The one WebSocket of a page (`/ws`, authenticated by the session cookie). Reconnects by itself with
// capped exponential backoff and jitter; after a reconnect `onresync` lets the page catch up. It comes
// back as the same device (the id the first `ready` gave), so the server's cursors for it still hold.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const AUTH_FAILED = 4401;
const BAD_ORIGIN = 4403;

export class Live {
  constructor({ onframe, onstatus = () => {}, onresync = () => {} }) {
    this.onframe = onframe;
    this.onstatus = onstatus;
    this.onresync = onresync;
    this.attempt = 0;
    this.everReady = false;
    this.socket = null;
    this.deviceId = null;
    this.heartbeat = null;
    this.retry = null;
    this.closed = false;
    window.addEventListener("online", () => this.reconnectSoon(0));
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.deviceId ? `?device_id=${encodeURIComponent(this.deviceId)}` : "";
    const socket = new WebSocket(`${scheme}//${location.host}/ws${query}`);
    this.socket = socket;
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => this.lost(socket, event.code);
  }

  receive(frame) {
    if (frame.type === "ready") {
      this.attempt = 0;
      this.deviceId = frame.device_id;
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => this.send({ type: "ping" }), frame.heartbeat_s * 1000);
      this.onstatus("live");
      if (this.everReady) this.onresync(frame);
      this.everReady = true;
    } else if (frame.type === "reconnect") {
      this.reconnectSoon(frame.after_ms);
    }
    this.onframe(frame);
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }

  lost(socket, code) {
    if (socket !== this.socket) return;
    clearInterval(this.heartbeat);
    if (code === AUTH_FAILED || code === BAD_ORIGIN) {
      this.onstatus("signed-out");
      return;
    }
    // Equal jitter: half the backoff for sure, half at random, so clients do not return in step.
    const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt++);
    this.reconnectSoon(cap / 2 + Math.random() * (cap / 2));
  }

  reconnectSoon(delayMs) {
    this.onstatus("reconnecting");
    clearTimeout(this.retry);
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) {
      const old = this.socket;
      this.socket = null;
      old.onclose = null;
      old.close();
    }
    this.retry = setTimeout(() => this.connect(), delayMs);
  }

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.heartbeat);
    if (this.socket) this.socket.close();
  }
}

export function statusText(status) {
  return { live: "● Live", reconnecting: "Reconnecting…", "signed-out": "Offline" }[status] || "";
}
