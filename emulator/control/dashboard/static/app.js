// Usage dashboard: every second, fetches the parts of the page the server renders (views.py,
// GET /__emulator__/dashboard/parts) and swaps in those that changed. Nothing is drawn here: the
// server escapes everything it renders, and this script only moves its HTML into place.
"use strict";

(() => {
  const POLL_MS = 1000;
  const prefix = document.body.dataset.prefix;
  const params = new URLSearchParams(location.search);
  const token = params.get("token"); // documented: with --token, open the page with ?token=
  let failedOnly = params.get("failed") === "1";
  let openId = params.get("request");
  let busy = false;
  let stopped = false;
  let noticeUntil = 0; // a notice (reset done) stays this long before "Live" shows again
  let latestAsk = 0; // an answer to an older ask (before a click or a filter change) is dropped
  const shown = {}; // part name → the HTML last swapped in

  const $ = (id) => document.getElementById(id);

  class AuthError extends Error {}

  function query() {
    const q = new URLSearchParams();
    if (token) q.set("token", token);
    if (failedOnly) q.set("failed", "1");
    if (openId) q.set("request", openId);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  async function call(path, method = "GET") {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(prefix + "/" + path, { method, headers, cache: "no-store" });
    if (r.status === 401) throw new AuthError("token");
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function setLive(text, isError = false) {
    const live = $("live");
    if (live.textContent !== text) live.textContent = text; // re-announced only when it changes
    live.classList.toggle("error", isError);
  }

  async function refresh() {
    const ask = ++latestAsk;
    const { parts } = await call("dashboard/parts" + query());
    if (ask !== latestAsk) return;
    for (const node of document.querySelectorAll("[data-part]")) {
      const name = node.dataset.part;
      if (name in parts && parts[name] !== shown[name]) {
        node.innerHTML = parts[name];
        shown[name] = parts[name];
      }
    }
    $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  }

  async function tick() {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try {
      await refresh();
      if (Date.now() >= noticeUntil) setLive("Live: refreshes every second.");
    } catch (err) {
      if (err instanceof AuthError) {
        stopped = true;
        setLive("The control plane refused the token: open this page as /__emulator__/?token=<the server's --token>.", true);
      } else {
        setLive("Cannot reach the emulator; retrying.", true);
      }
    } finally {
      busy = false;
    }
  }

  async function reset() {
    const button = $("reset");
    button.disabled = true;
    try {
      await call("reset", "POST");
      openId = null;
      history.replaceState(null, "", prefix + "/" + query());
      await refresh();
      setLive("Reset done: usage, request log, stubs and faults cleared.");
      noticeUntil = Date.now() + 5000;
    } catch (err) {
      setLive("Reset failed: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function start() {
    document.querySelector(".filter").hidden = false;
    document.querySelector(".nojs-filter").hidden = true;
    $("failed-only").addEventListener("change", (ev) => {
      failedOnly = ev.target.checked;
      history.replaceState(null, "", prefix + "/" + query());
      refresh().catch(() => setLive("Cannot reach the emulator; retrying.", true));
    });
    // The rows are swapped in every second: listen on the section that holds them.
    document.querySelector(".latest").addEventListener("click", (ev) => {
      const row = ev.target.closest("#requests a.open") && ev.target.closest("tr");
      if (!row) return;
      ev.preventDefault();
      openId = row.dataset.id;
      history.replaceState(null, "", prefix + "/" + query());
      refresh().then(() => {
        // Side by side the sticky panel is already in view; stacked, bring it into view.
        $("detail").focus({ preventScroll: matchMedia("(min-width: 961px)").matches });
      }).catch(() => setLive("Could not load that request.", true));
    });
    const button = $("reset");
    button.hidden = false;
    button.addEventListener("click", reset);
    document.addEventListener("visibilitychange", tick);
    setInterval(tick, POLL_MS);
    tick();
  }

  start();
})();
