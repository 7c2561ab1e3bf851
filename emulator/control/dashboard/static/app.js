// Usage dashboard: polls the control plane's JSON every second and redraws what the server rendered.
"use strict";

(() => {
  const POLL_MS = 1000;
  const page = document.body.dataset;
  const prefix = page.prefix;
  const latest = Number(page.latest);
  const warnAt = Number(page.warnAt);
  const params = new URLSearchParams(location.search);
  const token = params.get("token"); // documented: with --token, open the page with ?token=
  let failedOnly = params.get("failed") === "1";
  let openId = params.get("request");
  let busy = false;
  let stopped = false;

  const $ = (id) => document.getElementById(id);
  const nf = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  const usd = new Intl.NumberFormat("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  const neurons = (n) => nf.format(n);
  const dollars = (d) => "$" + usd.format(d);

  class AuthError extends Error {}

  function headers() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  async function call(path, { method = "GET", as = "json" } = {}) {
    const r = await fetch(prefix + "/" + path, { method, headers: headers(), cache: "no-store" });
    if (r.status === 401) throw new AuthError("token");
    if (r.status === 404 && as === "optional") return null;
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return as === "text" ? r.text() : r.json();
  }

  // el("td", {className: "num"}, "12") — children are nodes or text, never HTML.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k in node) node[k] = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function setLive(text, isError = false) {
    const live = $("live");
    if (live.textContent !== text) live.textContent = text; // re-announced only when it changes
    live.classList.toggle("error", isError);
  }

  function link(query) {
    const q = new URLSearchParams();
    if (token) q.set("token", token);
    for (const [k, v] of Object.entries(query)) q.set(k, v);
    const s = q.toString();
    return prefix + "/" + (s ? "?" + s : "");
  }

  function syncUrl() {
    const q = {};
    if (failedOnly) q.failed = "1";
    if (openId) q.request = openId;
    history.replaceState(null, "", link(q));
  }

  // Mirrors views.py: the same words and numbers whether the server or this script drew them.
  function level(used, allowance) {
    if (allowance <= 0 || used >= allowance) return "full";
    return used >= warnAt * allowance ? "warn" : "ok";
  }

  function wallNote(u, used, walls) {
    const allowance = u.daily_neurons;
    const left = Math.max(0, allowance - used);
    if (u.plan === "paid") {
      if (used >= allowance) {
        return `Beyond the daily allowance: ${neurons(u.overage_neurons)} neurons of overage, ` +
          `${dollars(u.overage_dollars)} billed.`;
      }
      return `${neurons(left)} neurons left before overage billing.`;
    }
    if (used >= allowance) {
      return `Daily allowance used up: calls are refused with error 4006 until the reset (${walls} refused so far).`;
    }
    if (used >= warnAt * allowance) {
      return `Near the daily wall: ${neurons(left)} neurons left, then calls fail with 4006.`;
    }
    return `${neurons(left)} neurons left today.`;
  }

  function planText(u) {
    const a = neurons(u.daily_neurons);
    return u.plan === "paid" ? `paid: ${a} neurons a day included, then billed` : `free: ${a} neurons a day, then 4006`;
  }

  function refusalsText(refusals) {
    const parts = Object.keys(refusals).sort().map((code) => `${code} × ${refusals[code]}`);
    return parts.join(", ") || "0";
  }

  function sourceLabel(e) {
    if (e.faulted && e.status >= 400) return "fault";
    if (e.error_code === 7404) return "miss";
    if (!e.source && e.status >= 400) return [4006, 5035, 3040].includes(e.error_code) ? "refused" : "rejected";
    if (e.source === "replay") return e.status > 0 && e.status < 400 ? "hit" : "replay";
    return e.source || "—";
  }

  function statusText(e) {
    let text = String(e.status);
    if (e.error_code) text += " · " + e.error_code;
    if (e.cut) text += " · cut";
    return text;
  }

  function renderUsage(u) {
    const allowance = u.daily_neurons;
    const used = allowance ? allowance - u.free_allowance_left : u.neurons;
    const walls = u.models.reduce((n, m) => n + (m.refusals["4006"] || 0), 0);
    $("day").textContent = u.day;
    $("neurons").textContent = neurons(u.neurons);
    $("allowance").textContent = neurons(allowance);
    $("pct").textContent = (allowance > 0 ? Math.floor((100 * used) / allowance) : 0) + "%";
    const bar = $("bar");
    bar.max = allowance;
    bar.value = Math.min(used, allowance);
    bar.setAttribute("aria-valuetext", `${neurons(used)} of ${neurons(allowance)} neurons`);
    $("wall").className = "wall " + level(used, allowance);
    $("wall-note").textContent = wallNote(u, used, walls);
    $("dollars").textContent = dollars(u.dollars);
    $("requests-total").textContent = String(u.requests);
    $("errors-total").textContent = String(u.errors);
    $("walls").textContent = String(walls);
    $("plan").textContent = u.plan;
    $("plan-text").textContent = planText(u);
    const resets = $("resets");
    resets.dateTime = u.resets_at;
    resets.textContent = u.resets_at.slice(0, 16).replace("T", " ") + " UTC";

    const rows = u.models.map((m) =>
      el("tr", {},
        el("th", { scope: "row", className: "model" }, m.model),
        el("td", { className: "num" }, String(m.requests)),
        el("td", { className: "num" }, neurons(m.neurons)),
        el("td", { className: "num" }, dollars(m.dollars)),
        el("td", { className: "num" }, String(m.errors)),
        el("td", {}, refusalsText(m.refusals)),
        el("td", {}, m.estimated ? el("abbr", { title: "estimated price" }, "est.") : "published"),
      ));
    if (!rows.length) rows.push(el("tr", { className: "empty" }, el("td", { colSpan: 7 }, "No calls yet today.")));
    $("models").tBodies[0].replaceChildren(...rows);
  }

  function renderRequests(entries) {
    const rows = entries.slice().reverse().map((e) => {
      const row = el("tr", { className: e.status >= 400 || e.cut ? "bad" : "" },
        el("td", {}, e.time.slice(11, 19)),
        el("td", {}, e.surface || "—"),
        el("td", { className: "model" }, e.model || e.path),
        el("td", { className: "status" }, statusText(e)),
        el("td", { className: "num" }, neurons(e.neurons)),
        el("td", { className: "num" }, e.latency_ms.toFixed(1) + " ms"),
        el("td", {}, sourceLabel(e)),
        el("td", {}, el("a", { className: "open", href: link({ request: String(e.id) }) },
          "details", el("span", { className: "sr-only" }, ` of request ${e.id}`))),
      );
      row.dataset.id = String(e.id);
      if (String(e.id) === openId) row.classList.add("selected");
      return row;
    });
    if (!rows.length) rows.push(el("tr", { className: "empty" }, el("td", { colSpan: 8 }, "No requests yet.")));
    $("requests").tBodies[0].replaceChildren(...rows);
  }

  function scope(item) {
    const bits = ["model", "surface", "prompt"].filter((k) => item[k]).map((k) => `${k}=${item[k]}`);
    if (item.body) bits.push("body=" + JSON.stringify(item.body).slice(0, 80));
    return bits.join(" ") || "every call";
  }

  function stubText(s) {
    const answers = (s.results || []).map((a) => {
      if ("error" in a) return `error ${a.error}`;
      if ("text" in a) return `text "${String(a.text).slice(0, 60)}"`;
      return "result " + JSON.stringify(a.result).slice(0, 60);
    });
    const label = s.id + (s.name ? ` (${s.name})` : "");
    const times = s.times !== null && s.times !== undefined ? `, ${s.times} left` : "";
    return `${label}: ${scope(s)} → ${answers.join(" then ")} · ${s.calls || 0} calls${times}`;
  }

  function faultText(f) {
    const label = f.id + (f.name ? ` (${f.name})` : "");
    let kind = String(f.error || f.kind) + (f.code ? ` ${f.code}/${f.status}` : "");
    if (typeof f.latency_ms === "number") kind += ` ${f.latency_ms} ms`;
    const key = ["nth", "every", "probability"].find((k) => f[k] !== null && f[k] !== undefined);
    const trigger = key ? `${key}=${f[key]}` : "always";
    return `${label}: ${kind} on ${scope(f)}, ${trigger} · fired ${f.fired || 0} of ${f.calls || 0} calls`;
  }

  function renderList(id, items, text) {
    const lis = items.map((item) => el("li", {}, text(item)));
    $(id).replaceChildren(...(lis.length ? lis : [el("li", {}, "none")]));
  }

  function renderHeader(health, clock) {
    const mode = $("mode");
    // The cassette name comes with the first render; keep it while the mode is unchanged.
    if (!mode.textContent.startsWith(health.mode)) mode.textContent = health.mode;
    $("clock").textContent = clock.real ? "real clock" :
      `clock frozen at ${clock.now.slice(0, 19).replace("T", " ")} UTC`;
  }

  function responseNodes(r) {
    if (!r) return [el("p", {}, "No response summary (the connection was cut before an answer).")];
    const out = [el("p", { className: "hint" },
      (r.content_type || "") + (r.bytes !== undefined && r.bytes !== null ? `, ${r.bytes.toLocaleString("en-US")} bytes` : ""))];
    if (r.kind === "stream") out.push(el("p", {}, "Streamed answer (server-sent events); its text is not kept in the log."));
    if (r.kind === "websocket") {
      out.push(el("p", { className: "websocket" }, `WebSocket session: ${r.messages_in || 0} messages in, ` +
        `${r.messages_out || 0} out${r.cut ? ", cut by a fault" : ""}`));
    }
    for (const err of r.errors || []) {
      out.push(el("p", { className: "error-line" }, el("strong", {}, `Error ${err.code}`), `: ${err.message}`));
    }
    if (r.text !== undefined && r.text !== null) {
      out.push(el("blockquote", { className: "text" }, r.text + (r.truncated ? " …" : "")));
    }
    if (r.thumbnail) out.push(el("img", { className: "thumb", src: r.thumbnail, alt: "Thumbnail of the generated image" }));
    else if (r.kind === "image") out.push(el("p", {}, "Image (no thumbnail kept)"));
    if (r.audio_seconds !== undefined && r.audio_seconds !== null) {
      out.push(el("p", { className: "audio" }, `${r.audio_seconds.toFixed(2)} s of audio`));
    }
    if (r.vectors) {
      const [n, d] = r.vectors;
      out.push(el("p", {}, `${n} vector${n !== 1 ? "s" : ""} × ${d} dimensions`));
    }
    if (r.json) out.push(el("pre", { className: "body" }, r.json));
    return out;
  }

  function renderDetail(e) {
    if (!e) {
      $("detail-h").textContent = "Request detail";
      $("detail-body").replaceChildren(openId ?
        el("p", {}, `Request ${openId} is no longer in the log.`) :
        el("p", { className: "hint" }, "Pick “details” on a request to see its body and answer."));
      return;
    }
    const facts = [
      ["Call", `${e.method} ${e.path}`],
      ["Time", e.time.replace("T", " ").slice(0, 23) + " UTC"],
      ["Surface", e.surface || "—"],
      ["Model", e.model || "—"],
      ["Status", statusText(e)],
      ["Neurons", neurons(e.neurons)],
      ["Latency", e.latency_ms.toFixed(1) + " ms"],
      ["Source", sourceLabel(e)],
      ["Request id", e.request_id || "—"],
    ];
    if (e.stub_id) facts.push(["Stub", e.stub_id]);
    if (e.fault_ids && e.fault_ids.length) facts.push(["Faults", e.fault_ids.join(", ")]);
    let body = e.body === null ? "(empty)" : JSON.stringify(e.body, null, 2);
    if (body.length > 4000) body = body.slice(0, 4000) + "\n… (truncated)";
    $("detail-h").textContent = `Request ${e.id}`;
    $("detail-body").replaceChildren(
      el("dl", { className: "facts small" }, ...facts.map(([k, v]) => el("div", { className: k === "Call" ? "wide" : "" }, el("dt", {}, k), el("dd", {}, v)))),
      el("h3", {}, "Request body"),
      el("pre", { className: "body" }, body),
      el("h3", {}, "Response"),
      ...responseNodes(e.response),
    );
  }

  async function refresh() {
    const query = `requests?limit=${latest}` + (failedOnly ? "&status=error" : "");
    const [usage, requests, stubs, faults, health, clock, svg, detail] = await Promise.all([
      call("usage"), call(query), call("stubs"), call("faults"), call("health"), call("clock"),
      call("usage/hourly.svg", { as: "text" }),
      openId ? call(`requests/${openId}`, { as: "optional" }) : Promise.resolve(null),
    ]);
    renderUsage(usage);
    renderRequests(requests.requests);
    renderList("stubs", stubs.stubs, stubText);
    renderList("faults", faults.faults, faultText);
    renderHeader(health, clock);
    $("hourly").innerHTML = svg; // server-made SVG of numbers only
    renderDetail(detail);
    $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  }

  async function tick() {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try {
      await refresh();
      setLive("Live: refreshes every second.");
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
      await call("reset", { method: "POST" });
      openId = null;
      syncUrl();
      await refresh();
      setLive("Reset done: usage, request log, stubs and faults cleared.");
    } catch (err) {
      setLive("Reset failed: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function start() {
    const filter = document.querySelector(".filter");
    filter.hidden = false;
    document.querySelector(".nojs-filter").hidden = true;
    $("failed-only").addEventListener("change", (ev) => {
      failedOnly = ev.target.checked;
      syncUrl();
      tick();
    });
    $("requests").addEventListener("click", (ev) => {
      const a = ev.target.closest("a.open");
      if (!a) return;
      ev.preventDefault();
      openId = a.closest("tr").dataset.id;
      syncUrl();
      for (const tr of $("requests").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === openId);
      call(`requests/${openId}`, { as: "optional" }).then((e) => {
        renderDetail(e);
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
