// Tally live dashboard: reads the election definition once, then keeps every
// contest and region up to date from the gateway's Server-Sent Events stream.
// EventSource reconnects by itself and resumes with Last-Event-ID.
"use strict";

(function () {
  const api = "api/v1/";
  const state = {
    election: null,
    order: new Map(),      // contest id -> sort position (national views first)
    regionNames: new Map(),
    contests: new Map(),   // contest id -> ContestResult
    regions: [],           // []RegionStatus
  };

  const $ = (id) => document.getElementById(id);
  const nf = new Intl.NumberFormat();
  const pf = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function time(t) {
    if (!t) return "";
    const d = new Date(t);
    if (isNaN(d) || d.getFullYear() < 1971) return "";
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function regionLabel(r) {
    return r.name || state.regionNames.get(r.id) || r.id;
  }

  function statusText(r) {
    if (r.status === "live") return "live";
    const since = time(r.since);
    return since ? r.status + " since " + since : r.status;
  }

  // ---- regions and banner -------------------------------------------------

  function renderRegions() {
    const list = $("regions");
    list.replaceChildren(...state.regions.map((r) =>
      el("li", { "data-region": r.id, "data-region-status": r.status },
        el("span", { class: "name", text: regionLabel(r) + ": " }),
        el("span", { class: "status", text: statusText(r) }))));
    const down = state.regions.filter((r) => r.status !== "live");
    const banner = $("banner");
    if (down.length === 0) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    banner.textContent = "Partial results: " + down.map((r) => regionLabel(r) + " " + statusText(r)).join("; ");
    banner.hidden = false;
  }

  // ---- contests -------------------------------------------------------------

  function contestCard(c) {
    const id = "contest-" + c.id;
    const table = el("table", { "aria-describedby": id + "-progress" },
      el("caption", { text: c.name + (c.partial ? " (partial)" : "") }),
      el("colgroup", {}, el("col", { class: "c-name" }), el("col", { class: "c-votes" }),
        el("col", { class: "c-share" }), el("col", { class: "c-bar" })),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Candidate" }),
        el("th", { scope: "col", class: "num", text: "Votes" }),
        el("th", { scope: "col", class: "num", text: "Share" }),
        el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Bar" })))),
      el("tbody", {}, ...(c.candidates || []).map((cand) => {
        const pct = Math.max(0, Math.min(100, (cand.share || 0) * 100));
        const bar = el("span");
        bar.style.width = pct.toFixed(1) + "%";
        return el("tr", { "data-candidate": cand.id, "data-votes": cand.votes },
          el("th", { scope: "row" }, cand.name || cand.id,
            cand.party ? el("span", { class: "party", text: cand.party }) : null),
          el("td", { class: "num votes", text: nf.format(cand.votes || 0) }),
          el("td", { class: "num share", text: pf.format(cand.share || 0) }),
          el("td", {}, el("div", { class: "bar", "aria-hidden": "true" }, bar)));
      })));
    const p = c.precincts || {};
    const progress = el("p", { class: "progress", id: id + "-progress", "data-precincts-reporting": p.reporting || 0, "data-precincts-total": p.total || 0 },
      "Precincts reporting: " + nf.format(p.reporting || 0) + " of " + nf.format(p.total || 0) +
      " (" + nf.format(p.complete || 0) + " complete)",
      c.partial ? el("span", { class: "partial", text: " — partial: a region is not live" }) : null);
    const updated = el("p", { class: "updated" }, "Last update: ",
      el("time", { "data-last-update": "", datetime: c.last_update || "", text: time(c.last_update) || "none yet" }));
    const called = c.call && c.call.status === "called" ? c.call.winner : "none";
    return el("section", {
      class: "contest", id, "data-contest": c.id, "data-scope": c.scope, "data-partial": c.partial ? "true" : "false",
      "data-call": called, "data-projection": c.projection ? "yes" : "no",
    }, table, callLine(c), progress, projectionBlock(c, id), updated);
  }

  // ---- projections and calls -------------------------------------------------

  // Shares and margins are fractions. Counted shares are rounded down, so
  // that "100%" means everything expected is in.
  const pct1 = (x) => ((x || 0) * 100).toFixed(1);
  const signed = (x) => ((x || 0) < 0 ? "\u2212" : "+") + Math.abs((x || 0) * 100).toFixed(1);
  const countedPct = (x) => (x > 0 && x < 0.01 ? "<1" : String(Math.floor((x || 0) * 100)));
  const range = (i, fmt) => (i ? fmt(i.lo) + (fmt === signed ? " to " : "\u2013") + fmt(i.hi) : "");

  function candidateName(c, id) {
    const cand = (c.candidates || []).find((x) => x.id === id);
    return (cand && cand.name) || id;
  }

  function callLine(c) {
    const call = c.call;
    if (!call) {
      if (!c.projection) return null; // no projector for this contest: say nothing
      return el("p", { class: "call", "data-call-status": "none" }, el("strong", { text: "Too early to call" }));
    }
    const at = time(call.at);
    if (call.status === "retracted") {
      return el("p", { class: "call", "data-call-status": "retracted" },
        el("strong", { text: "Call retracted" + (at ? " at " + at : "") }),
        call.reason ? " (" + call.reason + ")" : null);
    }
    let basis;
    if (call.by === "model") {
      const b = call.basis;
      basis = "model" + (b ? ", " + countedPct(b.counted_share) + "% of expected vote counted" : "");
    } else {
      basis = "by " + (call.by || "hand") + (call.reason ? ": " + call.reason : "");
    }
    return el("p", { class: "call", "data-call-status": "called" },
      el("strong", { text: "Called for " + candidateName(c, call.winner) + (at ? " at " + at : "") }),
      " (" + basis + ")");
  }

  function projectionBlock(c, id) {
    const p = c.projection;
    if (!p) return null;
    const items = (p.candidates || []).map((e) =>
      el("li", { "data-estimate": e.id },
        el("span", { class: "name", text: candidateName(c, e.id) + ": " }),
        el("span", { class: "est", text: "est. " + pct1(e.share) + "% (" + range(e.i90, pct1) + ")" })));
    const m = p.margin || {};
    const margin = m.leader
      ? el("p", { class: "margin", "data-margin": "" }, "Margin: " + candidateName(c, m.leader) + " over " +
          candidateName(c, m.runner_up) + ", est. " + signed(m.estimate) + " pts (" + range(m.i90, signed) + ")")
      : null;
    const counted = el("p", { class: "expected", "data-counted-share": (p.counted_share || 0).toFixed(4) },
      "Expected vote outstanding: " + nf.format(p.expected_outstanding || 0) + " \u00b7 " +
      countedPct(p.counted_share) + "% of expected vote counted");
    const note = el("p", { class: "note" }, "Estimated final result, 90% intervals in parentheses" +
      (p.baseline_year ? "; swing from " + p.baseline_year : "") + (p.at ? "; as of " + time(p.at) : "") + ".");
    return el("div", { class: "projection", role: "group", "aria-labelledby": id + "-projection" },
      el("h3", { id: id + "-projection", text: "Projection" }),
      el("ul", { class: "estimates" }, ...items), margin, counted, note);
  }

  // announceCall tells screen readers about a call made or retracted while
  // the page is open (the cards are rebuilt on every update, so a live
  // region inside them would not be read).
  function announceCall(prev, c) {
    if (!prev) return; // first sight of the contest: nothing changed
    const a = prev.call || {}, b = c.call || {};
    if (a.status === b.status && a.winner === b.winner && a.at === b.at) return;
    if (!b.status) return;
    const what = b.status === "called" ? "called for " + candidateName(c, b.winner) : "call retracted";
    $("announce").textContent = c.name + ": " + what + ".";
  }

  function position(id) {
    return state.order.has(id) ? state.order.get(id) : Number.MAX_SAFE_INTEGER;
  }

  function renderContest(c) {
    const container = c.scope === "national" ? $("national") : $("states");
    const card = contestCard(c);
    const old = document.querySelector('[data-contest="' + CSS.escape(c.id) + '"]');
    if (old) old.remove(); // re-inserted in place: the order may have arrived since
    const pos = position(c.id);
    const next = Array.from(container.children).find((e) => {
      const p = position(e.dataset.contest);
      return p > pos || (p === pos && e.dataset.contest > c.id);
    });
    container.insertBefore(card, next || null);
    $("empty").hidden = state.contests.size > 0;
  }

  function removeContest(id) {
    state.contests.delete(id);
    const old = document.querySelector('[data-contest="' + CSS.escape(id) + '"]');
    if (old) old.remove();
    $("empty").hidden = state.contests.size > 0;
  }

  // ---- data -------------------------------------------------------------------

  async function loadElection() {
    try {
      const res = await fetch(api + "election", { headers: { Accept: "application/json" } });
      if (!res.ok) return;
      const e = await res.json();
      state.election = e;
      document.title = e.name + " — Tally";
      $("election-name").textContent = e.name;
      $("election-date").textContent = e.date;
      $("election-test").hidden = !e.test;
      let i = 0;
      for (const o of e.offices || []) state.order.set(o.national_contest, i++);
      for (const c of e.contests || []) state.order.set(c.id, i++);
      for (const r of e.regions || []) state.regionNames.set(r.id, r.name);
      for (const c of state.contests.values()) renderContest(c);
      renderRegions();
    } catch (err) {
      // The stream still works without the definition; only ordering suffers.
    }
  }

  function setConnection(s, text) {
    const c = $("connection");
    c.dataset.connection = s;
    c.textContent = text;
  }

  function connect() {
    const es = new EventSource(api + "stream");
    es.onopen = () => setConnection("live", "live");
    es.onerror = () => setConnection("reconnecting", "reconnecting…");
    es.addEventListener("contest", (ev) => {
      const c = JSON.parse(ev.data);
      announceCall(state.contests.get(c.id), c);
      state.contests.set(c.id, c);
      renderContest(c);
    });
    es.addEventListener("contest-removed", (ev) => removeContest(JSON.parse(ev.data).id));
    es.addEventListener("regions", (ev) => {
      state.regions = JSON.parse(ev.data) || [];
      renderRegions();
    });
    es.addEventListener("reset", () => {
      for (const id of Array.from(state.contests.keys())) removeContest(id);
      state.regions = [];
      renderRegions();
    });
  }

  function start() {
    loadElection();
    connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
