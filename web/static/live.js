/* Shared by every page: the JSON API, small formatters, and live updates.
 * One EventSource per tab carries every topic the page watches; when the server refuses a
 * stream (503: too many open) or the browser cannot keep one, the page polls fingerprints. */
"use strict";

const dagu = {};

dagu.csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
dagu.role = (document.querySelector('meta[name="dagu-role"]') || {}).content || "";  /* viewer, operator, admin */
dagu.initial = JSON.parse(document.getElementById("initial-data").textContent || "{}");

dagu.api = async function (path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.body !== undefined && typeof opts.body !== "string") {
    opts.body = JSON.stringify(opts.body);
    opts.headers["Content-Type"] = "application/json";
  }
  if (opts.method && opts.method !== "GET") {
    opts.headers["X-Requested-With"] = "dagu";
    opts.headers["X-CSRF-Token"] = dagu.csrf;  /* the session's token: web/auth.py checks it */
  }
  const res = await fetch("/api/v1" + path, opts);
  if (res.status === 401) {  /* the session ended (logged out, expired, password changed) */
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }
  const data = await res.json().catch(() => ({ error: { message: res.statusText } }));
  if (!res.ok) {
    const err = new Error((data.error && data.error.message) || res.statusText);
    err.diagnostics = data.error && data.error.diagnostics;
    throw err;
  }
  return data;
};

dagu.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
};

dagu.time = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
dagu.duration = function (sec) {
  if (sec === null || sec === undefined) return "";
  if (sec < 60) return sec.toFixed(sec < 10 ? 2 : 1) + " s";
  if (sec < 3600) return Math.floor(sec / 60) + " m " + Math.round(sec % 60) + " s";
  return Math.floor(sec / 3600) + " h " + Math.round((sec % 3600) / 60) + " m";
};
dagu.bytes = function (n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
};
dagu.badge = (status) => dagu.el("span", { class: "badge s-" + (status || "none") }, (status || "none").replace("_", " "));

/* Call onChange(topicsChanged) whenever one of `topics` changes; returns nothing. */
dagu.live = function (topics, onChange) {
  const state = document.getElementById("live-state");
  const show = (text, cls) => { state.textContent = "\u25CF " + text; state.className = "live " + cls; };
  const query = "topics=" + encodeURIComponent(topics.join(","));
  let polling = false;
  function poll() {
    if (polling) return;
    polling = true;
    show("polling", "poll");
    let last = null;
    async function tick() {
      try {
        const res = await dagu.api("/events/poll?" + query);
        if (last) {
          const changed = topics.filter((t) => res.fingerprints[t] !== last[t]);
          if (changed.length) onChange(changed);
        } else onChange(topics);  /* as on "hello": catch up with what changed before the first look */
        last = res.fingerprints;
      } catch (e) { show("offline", "off"); }
      setTimeout(tick, 1000);
    }
    tick();
  }
  if (!window.EventSource) { poll(); return; }
  const source = new EventSource("/api/v1/events?" + query);
  /* "hello" opens (and reopens) the stream: what changed since the page's data was read, before
   * the stream watched, would otherwise never be told, so the page reads its topics once more. */
  source.addEventListener("hello", () => { show("live", "on"); onChange(topics); });
  source.addEventListener("change", (ev) => onChange(JSON.parse(ev.data).topics));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) poll(); else show("reconnecting", "off");
  });
};
