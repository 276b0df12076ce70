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
    const last = time(r.last_update);
    return (since ? r.status + " since " + since : r.status) + (last ? ", last update " + last : "");
  }

  // A region's checkpoint state: an alert when a checkpoint did not match
  // what the hub holds, "verified" when the latest one matched everything.
  function checkpointText(r) {
    if (r.alert) return "checkpoint mismatch at seq " + r.alert.seq + ": " + (r.alert.mismatch || "");
    if (r.reconciled) return "verified";
    return "";
  }

  // ---- regions and banner -------------------------------------------------

  function renderRegions() {
    const list = $("regions");
    list.replaceChildren(...state.regions.map((r) =>
      el("li", { "data-region": r.id, "data-region-status": r.status, "data-reconciled": r.reconciled ? "true" : "false", "data-alert": r.alert ? "true" : "false" },
        el("span", { class: "name", text: regionLabel(r) + ": " }),
        el("span", { class: "status", text: statusText(r) }),
        checkpointText(r) ? el("span", { class: r.alert ? "alert" : "verified", text: " · " + checkpointText(r) }) : null)));
    const down = state.regions.filter((r) => r.status !== "live");
    const alerts = state.regions.filter((r) => r.alert);
    const banner = $("banner");
    if (down.length === 0 && alerts.length === 0) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    const parts = [];
    if (down.length) parts.push("Partial results: " + down.map((r) => regionLabel(r) + " " + statusText(r)).join("; "));
    if (alerts.length) parts.push("Reconciliation alert: " + alerts.map((r) => regionLabel(r) + " " + checkpointText(r)).join("; "));
    banner.textContent = parts.join(". ");
    banner.hidden = false;
  }

  // ---- what changed ---------------------------------------------------------

  const feedMax = 50;
  const feedSeen = new Set();

  function candName(contestId, candId) {
    const c = state.contests.get(contestId);
    if (c) return candidateName(c, candId);
    for (const d of (state.election && state.election.contests) || []) {
      if (d.id !== contestId) continue;
      const x = (d.candidates || []).find((k) => k.id === candId);
      if (x) return x.name || candId;
    }
    return candId;
  }

  const signedN = (n) => (n < 0 ? "\u2212" : "+") + nf.format(Math.abs(n));

  // voteChanges lists the non-zero changes per candidate, largest first.
  function voteChanges(item) {
    return Object.entries(item.votes || {}).filter(([, n]) => n !== 0)
      .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
      .map(([id, n]) => [candName(item.contest, id), n]);
  }

  function feedEntry(item) {
    const where = (item.region_name || item.region) + " \u00b7 " + (item.contest_name || item.contest);
    const at = time(item.at);
    let text, link = null;
    if (item.kind === "correction") {
      const parts = voteChanges(item).map(([name, n]) => signedN(n) + " for " + name);
      text = where + ": corrected " + (item.precinct_name || item.precinct) + ": " +
        (parts.length ? parts.join(", ") : "no change in votes") + (item.reason ? "; reason: " + item.reason : "");
      link = el("a", { href: "#/contest/" + encodeURIComponent(item.contest) + "/precinct/" + encodeURIComponent(item.precinct) },
        "audit trail", el("span", { class: "sr-only", text: " of " + (item.precinct_name || item.precinct) }));
    } else {
      const parts = voteChanges(item).map(([name, n]) => name + " " + signedN(n));
      text = where + ": " + signedN(item.total_votes || 0) + " votes" +
        " (" + nf.format(item.precincts) + (item.precincts === 1 ? " precinct" : " precincts") +
        (item.new_precincts ? ", " + nf.format(item.new_precincts) + " new" : "") + ")" +
        (parts.length ? ", " + parts.join(", ") : "");
    }
    return el("li", { "data-feed": item.kind, "data-feed-id": item.id, "data-contest-ref": item.contest },
      at ? el("time", { datetime: item.at, text: at + " " }) : null, text, link ? " (" : null, link, link ? ")" : null);
  }

  function addFeed(items) {
    const list = $("feed");
    for (const item of items || []) {
      if (feedSeen.has(item.id)) continue;
      feedSeen.add(item.id);
      list.prepend(feedEntry(item));
    }
    while (list.children.length > feedMax) {
      const last = list.lastElementChild;
      feedSeen.delete(last.dataset.feedId);
      last.remove();
    }
    $("feed-empty").hidden = list.children.length > 0;
  }

  async function loadFeed() {
    try {
      // The API lets CDNs and browsers reuse a response for a second;
      // "no-cache" makes the dashboard revalidate (a 304 when unchanged)
      // so that it never shows an older state than the live stream's.
      const res = await fetch(api + "feed", { headers: { Accept: "application/json" }, cache: "no-cache" });
      if (res.ok) addFeed(await res.json());
    } catch (err) { /* the stream brings new items anyway */ }
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
      c.partial ? el("span", { class: "partial", text: " — partial: a region is not live" }) : null,
      c.reconciled ? el("span", { class: "reconciled", text: " — complete and reconciled with every region" })
        : c.complete ? el("span", { class: "complete", text: " — complete; reconciliation pending" }) : null);
    const updated = el("p", { class: "updated" }, "Last update: ",
      el("time", { "data-last-update": "", datetime: c.last_update || "", text: time(c.last_update) || "none yet" }));
    const called = c.call && c.call.status === "called" ? c.call.winner : "none";
    return el("section", {
      class: "contest", id, "data-contest": c.id, "data-scope": c.scope, "data-partial": c.partial ? "true" : "false",
      "data-complete": c.complete ? "true" : "false", "data-reconciled": c.reconciled ? "true" : "false",
      "data-call": called, "data-projection": c.projection ? "yes" : "no",
    }, table, callLine(c), progress, projectionBlock(c, id), updated,
      c.scope === "state" ? el("p", { class: "details" }, el("a", { href: "#/contest/" + encodeURIComponent(c.id), "data-details": c.id },
        "Map, counties and precincts", el("span", { class: "sr-only", text: ": " + c.name }))) : null);
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
    if (page.contest === c.id) page.update(c);
  }

  function removeContest(id) {
    state.contests.delete(id);
    const old = document.querySelector('[data-contest="' + CSS.escape(id) + '"]');
    if (old) old.remove();
    $("empty").hidden = state.contests.size > 0;
  }

  // ---- contest page -----------------------------------------------------------
  //
  // #/contest/<id> shows one contest: its headline, a county map with a
  // table alternative, results by region and by county, and the precinct
  // list; #/contest/<id>/precinct/<precinct> opens a precinct's audit trail.

  const svgNS = "http://www.w3.org/2000/svg";
  const shades = {
    DEM: ["#c6d8f0", "#8fb3e0", "#4f86c6", "#1f4e8c"],
    REP: ["#f6cdc9", "#e8918a", "#cf4f46", "#a4161a"],
    other: ["#e2d9ef", "#bda9d9", "#8c6fba", "#5b3f8c"],
  };
  const marginSteps = [5, 15, 30]; // points: below 5, 5-15, 15-30, 30 and over
  const pageSize = 50;

  // slug folds a county name as web/gencounties.go does.
  const slug = (s) => String(s || "").toLowerCase().normalize("NFD").replace(/[^a-z0-9]/g, "").replace(/county$/, "");

  function svg(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // lead describes who leads a set of votes: leader, runner-up and margin in
  // points of the votes counted.
  function lead(contestId, votes) {
    const entries = Object.entries(votes || {}).sort((a, b) => b[1] - a[1]);
    const total = entries.reduce((s, [, n]) => s + n, 0);
    if (total === 0) return null;
    const [leader, top] = entries[0];
    const second = entries.length > 1 ? entries[1][1] : 0;
    return { leader, name: candName(contestId, leader), margin: ((top - second) / total) * 100, tie: top === second, total };
  }

  // contestState is a state contest's postal code, once known.
  function contestState(id) {
    const c = state.contests.get(id);
    if (c && c.state) return c.state;
    const d = ((state.election && state.election.contests) || []).find((x) => x.id === id);
    return d && d.state;
  }

  function partyOf(contestId, candId) {
    const c = state.contests.get(contestId);
    const cand = c && (c.candidates || []).find((x) => x.id === candId);
    return (cand && cand.party) || "";
  }

  function shade(contestId, l) {
    if (!l || l.tie) return null;
    const p = partyOf(contestId, l.leader);
    const set = shades[p] || shades.other;
    let i = 0;
    while (i < marginSteps.length && l.margin >= marginSteps[i]) i++;
    return set[i];
  }

  function leadText(l) {
    if (!l) return "no results yet";
    if (l.tie) return "tied";
    return l.name + " leads by " + l.margin.toFixed(1) + " pts";
  }

  // leadShort is leadText for table cells: "BIDEN +24.7".
  function leadShort(l) {
    if (!l) return "\u2013";
    if (l.tie) return "tied";
    return l.name + " +" + l.margin.toFixed(1);
  }

  // scroller wraps a wide table so that it scrolls on its own, by keyboard too.
  const scroller = (label, table) => el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": label }, table);

  function th(text, cls) { return el("th", { scope: "col", class: cls, text }); }

  const page = {
    contest: null,     // the contest shown, or null on the overview
    precinct: null,    // the precinct whose audit trail is open
    counties: null,    // CountyResults
    shapes: null,      // counties-<ST>.json
    query: { q: "", county: "", corrected: false, offset: 0 },
    timers: {},

    show(id, precinct) {
      const changed = this.contest !== id;
      this.contest = id;
      this.precinct = precinct || null;
      $("overview").hidden = true;
      const view = $("contest-view");
      view.hidden = false;
      if (changed) {
        this.counties = null;
        this.shapes = null;
        this.query = { q: "", county: "", corrected: false, offset: 0 };
        view.replaceChildren(this.skeleton(id));
        const c = state.contests.get(id);
        if (c) this.update(c);
        this.loadCounties();
        this.loadPrecincts();
        $("contest-title").focus();
      }
      this.loadAudit();
    },

    hide() {
      this.contest = null;
      this.precinct = null;
      $("contest-view").hidden = true;
      $("contest-view").replaceChildren();
      $("overview").hidden = false;
    },

    skeleton(id) {
      const c = state.contests.get(id);
      const name = (c && c.name) || id;
      document.title = name + " — Tally";
      const national = c ? c.scope === "national" : id.startsWith("all-");
      return el("article", { class: "contest-page", "data-contest-page": id },
        el("p", { class: "back" }, el("a", { href: "#/" }, "\u2190 All contests")),
        el("h2", { id: "contest-title", tabindex: "-1", text: name }),
        el("div", { id: "cp-headline" }),
        el("section", { "aria-labelledby": "cp-regions-title" },
          el("h3", { id: "cp-regions-title", text: "Results by region" }), el("div", { id: "cp-regions" })),
        national ? el("p", { class: "note", text: "A national view sums the state contests; open a state's contest for its counties and precincts." }) : null,
        national ? null : el("section", { "aria-labelledby": "cp-counties-title" },
          el("h3", { id: "cp-counties-title", text: "Results by county" }),
          el("div", { class: "county-grid" },
            el("figure", { id: "cp-map", class: "map" }, el("p", { class: "note", text: "Loading the map…" })),
            el("div", { id: "cp-counties" }, el("p", { class: "note", text: "Loading…" })))),
        national ? null : el("section", { "aria-labelledby": "cp-precincts-title" },
          el("h3", { id: "cp-precincts-title", text: "Precincts" }),
          this.precinctForm(),
          el("div", { id: "cp-precincts" }),
          el("div", { id: "cp-audit", class: "audit" })));
    },

    update(c) {
      if (c.id !== this.contest) return;
      const head = $("cp-headline");
      if (!head) return;
      const card = contestCard(c);
      card.removeAttribute("id");
      const details = card.querySelector(".details");
      if (details) details.remove();
      card.querySelector("caption").textContent = "Candidates" + (c.partial ? " (partial)" : "");
      card.setAttribute("data-headline", "");
      // ids inside the card must stay unique on the page
      for (const e of card.querySelectorAll("[id]")) e.id = "cp-" + e.id;
      for (const e of card.querySelectorAll("[aria-describedby]")) e.setAttribute("aria-describedby", "cp-" + e.getAttribute("aria-describedby"));
      for (const e of card.querySelectorAll("[aria-labelledby]")) e.setAttribute("aria-labelledby", "cp-" + e.getAttribute("aria-labelledby"));
      head.replaceChildren(card);
      if ($("contest-title").textContent !== c.name) {
        $("contest-title").textContent = c.name;
        document.title = c.name + " — Tally";
      }
      this.renderRegions(c);
      if (!this.shapes || !this.counties) this.loadCounties(); // the first sight of the contest
      else this.schedule("counties", 2000, () => this.loadCounties());
      this.schedule("precincts", 5000, () => this.loadPrecincts());
    },

    // schedule runs f at most once per ms milliseconds.
    schedule(name, ms, f) {
      if (this.timers[name]) return;
      this.timers[name] = setTimeout(() => { this.timers[name] = null; f(); }, ms);
    },

    refresh() {
      if (!this.contest) return;
      this.loadCounties();
      this.loadPrecincts();
      this.loadAudit();
    },

    candidatesOf(c) {
      return (c && c.candidates ? c.candidates : []).slice(0, 3);
    },

    renderRegions(c) {
      const cands = this.candidatesOf(c);
      const rows = (c.regions || []).map((r) => {
        const l = lead(c.id, r.votes);
        return el("tr", { "data-region-row": r.id, "data-region-status": r.status },
          el("th", { scope: "row", text: regionLabel(r) }),
          el("td", { text: statusText(r) + (r.reconciled ? " · verified" : "") }),
          ...cands.map((k) => el("td", { class: "num", text: nf.format((r.votes || {})[k.id] || 0) })),
          el("td", { class: "lead", text: leadShort(l) }),
          el("td", { class: "num", text: nf.format(r.precincts.reporting || 0) + " of " + nf.format(r.precincts.total || 0) }));
      });
      const table = el("table", { class: "data" },
        el("caption", { class: "sr-only", text: "Results by region, " + c.name }),
        el("thead", {}, el("tr", {}, th("Region"), th("Status"), ...cands.map((k) => th(k.name || k.id, "num")), th("Lead (pts)"), th("Precincts", "num"))),
        el("tbody", {}, ...rows));
      const box = $("cp-regions");
      if (box) box.replaceChildren(scroller("Results by region, scrollable table", table));
    },

    async loadCounties() {
      const id = this.contest;
      if (!id || !$("cp-counties")) return;
      try {
        const res = await fetch(api + "contests/" + encodeURIComponent(id) + "/counties", { headers: { Accept: "application/json" }, cache: "no-cache" });
        if (!res.ok || this.contest !== id) return;
        this.counties = await res.json();
        const st = contestState(id);
        if (!this.shapes && st) {
          const r = await fetch("counties-" + encodeURIComponent(st) + ".json");
          if (r.ok && this.contest === id) this.shapes = await r.json();
          else if (this.contest === id) this.shapes = { none: true };
        }
        if (this.contest === id && state.contests.has(id)) this.renderCounties();
      } catch (err) { /* retried on the next update */ }
    },

    renderCounties() {
      const id = this.contest;
      const c = state.contests.get(id);
      const counties = (this.counties && this.counties.counties) || [];
      const cands = this.candidatesOf(c);
      const label = (cr) => cr.county + ": " + leadText(lead(id, cr.votes)) + ", " +
        nf.format(cr.precincts.reporting) + " of " + nf.format(cr.precincts.total) + " precincts";
      // The table: the map's alternative, with the same data.
      const table = el("table", { class: "data", id: "county-table" },
        el("caption", { class: "sr-only", text: "Results by county, " + ((c && c.name) || id) }),
        el("thead", {}, el("tr", {}, th("County"), ...cands.map((k) => th(k.name || k.id, "num")), th("Lead (pts)"), th("Precincts", "num"))),
        el("tbody", {}, ...counties.map((cr) => {
          const l = lead(id, cr.votes);
          return el("tr", { "data-county": cr.county },
            el("th", { scope: "row" }, el("button", { type: "button", class: "linkish", "data-county-filter": cr.county,
              "aria-label": "Show precincts of " + cr.county }, cr.county)),
            ...cands.map((k) => el("td", { class: "num", text: nf.format((cr.votes || {})[k.id] || 0) })),
            el("td", { class: "lead", text: leadShort(l) }),
            el("td", { class: "num", text: nf.format(cr.precincts.reporting) + " of " + nf.format(cr.precincts.total) }));
        })));
      table.addEventListener("click", (ev) => {
        const b = ev.target.closest("[data-county-filter]");
        if (b) this.filterCounty(b.dataset.countyFilter);
      });
      $("cp-counties").replaceChildren(scroller("Results by county, scrollable table", table));
      const sel = $("pf-county");
      if (sel && sel.options.length === 1) sel.append(...counties.map((cr) => el("option", { value: cr.county, text: cr.county })));
      this.renderMap(counties, label);
    },

    renderMap(counties, label) {
      const fig = $("cp-map");
      const shapes = this.shapes;
      if (!shapes || shapes.none) {
        fig.replaceChildren(el("p", { class: "note", text: "No map for this state; the table has every county." }));
        return;
      }
      const byslug = new Map(counties.map((cr) => [slug(cr.county), cr]));
      const id = this.contest;
      const map = svg("svg", { viewBox: "0 0 " + shapes.width + " " + shapes.height, role: "group", "aria-labelledby": "map-caption", class: "county-map" });
      const defs = svg("defs");
      const pat = svg("pattern", { id: "no-results", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
      pat.append(svg("rect", { width: 6, height: 6, fill: "#f4f5f7" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#9aa0a6", "stroke-width": 1.5 }));
      defs.append(pat);
      map.append(defs);
      const detail = el("p", { class: "map-detail", id: "map-detail", text: "Select a county for its result." });
      for (const sh of shapes.counties) {
        const cr = byslug.get(sh.slug) || byslug.get(slug(sh.name));
        if (!cr) { // a county without precincts in this contest
          map.append(svg("path", { d: sh.d, class: "county county-none", fill: "#ffffff", "aria-hidden": "true" }));
          continue;
        }
        const l = lead(id, cr.votes);
        const fill = shade(id, l);
        const p = svg("path", { d: sh.d, class: "county", fill: fill || "url(#no-results)", tabindex: "0", role: "button",
          "aria-label": label(cr), "data-county-shape": cr.county, "data-leader": l && !l.tie ? l.leader : "" });
        const t = svg("title");
        t.textContent = label(cr);
        p.append(t);
        const show = () => { detail.textContent = label(cr); };
        p.addEventListener("focus", show);
        p.addEventListener("mouseenter", show);
        p.addEventListener("click", () => this.filterCounty(cr.county));
        p.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); this.filterCounty(cr.county); }
        });
        map.append(p);
      }
      const c = state.contests.get(id);
      const parties = [];
      for (const k of (c && c.candidates) || []) if (!parties.some((x) => x[0] === k.id) && counties.some((cr) => { const l = lead(id, cr.votes); return l && l.leader === k.id; })) parties.push([k.id, k.name || k.id, k.party]);
      const legend = el("ul", { class: "legend", "aria-label": "Map legend" },
        ...parties.map(([, name, party]) => el("li", {}, ...(shades[party] || shades.other).map((col) => {
          const sw = el("span", { class: "swatch", "aria-hidden": "true" });
          sw.style.background = col;
          return sw;
        }), " " + name + " leads, by under 5, 5\u201315, 15\u201330, 30+ pts")),
        el("li", {}, el("span", { class: "swatch swatch-none", "aria-hidden": "true" }), " no results yet"));
      fig.replaceChildren(map,
        el("figcaption", { id: "map-caption" }, "County map of " + ((c && c.state) || "") + ": shaded by leader, darker for a wider margin. The table has the same data."),
        detail, legend);
    },

    filterCounty(county) {
      const sel = $("pf-county");
      if (!sel) return;
      sel.value = county;
      this.query.county = county;
      this.query.offset = 0;
      this.loadPrecincts();
      $("cp-precincts-title").scrollIntoView({ block: "start" });
    },

    precinctForm() {
      const form = el("form", { class: "filters", role: "search", "aria-label": "Find precincts" },
        el("label", { for: "pf-q" }, "Name"),
        el("input", { id: "pf-q", type: "search", autocomplete: "off", placeholder: "e.g. Ward 1" }),
        el("label", { for: "pf-county" }, "County"),
        el("select", { id: "pf-county" }, el("option", { value: "", text: "All counties" })),
        el("span", { class: "check" }, el("input", { id: "pf-corrected", type: "checkbox" }),
          el("label", { for: "pf-corrected" }, " Corrected only")));
      let t = null;
      form.addEventListener("submit", (ev) => ev.preventDefault());
      form.addEventListener("input", (ev) => {
        this.query.q = $("pf-q").value;
        this.query.county = $("pf-county").value;
        this.query.corrected = $("pf-corrected").checked;
        this.query.offset = 0;
        clearTimeout(t);
        t = setTimeout(() => this.loadPrecincts(), ev.target.id === "pf-q" ? 250 : 0);
      });
      return form;
    },

    async loadPrecincts() {
      const id = this.contest;
      if (!id || !$("cp-precincts")) return;
      const q = this.query;
      const params = new URLSearchParams({ offset: q.offset, limit: pageSize });
      if (q.q) params.set("q", q.q);
      if (q.county) params.set("county", q.county);
      if (q.corrected) params.set("corrected", "true");
      try {
        const res = await fetch(api + "contests/" + encodeURIComponent(id) + "/precincts?" + params, { headers: { Accept: "application/json" }, cache: "no-cache" });
        if (!res.ok || this.contest !== id) return;
        this.renderPrecincts(await res.json());
      } catch (err) { /* retried on the next update */ }
    },

    renderPrecincts(pg) {
      const id = this.contest;
      const c = state.contests.get(id);
      const status = (p) => (!p.reporting ? "not reporting" : p.complete ? "complete" : "partial");
      const rows = (pg.precincts || []).map((p) => {
        const l = lead(id, p.votes);
        const href = "#/contest/" + encodeURIComponent(id) + "/precinct/" + encodeURIComponent(p.id);
        return el("tr", { "data-precinct": p.id, "data-corrections": p.corrections },
          el("th", { scope: "row" }, el("a", { href, "aria-current": this.precinct === p.id ? "true" : null }, p.name)),
          el("td", { text: p.county }),
          el("td", { text: status(p) }),
          el("td", { class: "num", text: nf.format(p.total_votes || 0) }),
          el("td", { class: "lead", text: p.reporting ? leadShort(l) : "" }),
          el("td", { class: "num", text: p.corrections ? String(p.corrections) : "" }));
      });
      const from = pg.matched ? pg.offset + 1 : 0, to = pg.offset + (pg.precincts || []).length;
      const table = el("table", { class: "data", id: "precinct-table" },
        el("caption", { class: "sr-only", text: "Precincts of " + ((c && c.name) || id) + ", " + from + " to " + to + " of " + pg.matched }),
        el("thead", {}, el("tr", {}, th("Precinct"), th("County"), th("Status"), th("Votes", "num"), th("Lead (pts)"), th("Corrections", "num"))),
        el("tbody", {}, ...rows));
      const prev = el("button", { type: "button", disabled: pg.offset === 0 }, "Previous");
      const next = el("button", { type: "button", disabled: to >= pg.matched }, "Next");
      prev.addEventListener("click", () => { this.query.offset = Math.max(0, pg.offset - pageSize); this.loadPrecincts(); });
      next.addEventListener("click", () => { this.query.offset = pg.offset + pageSize; this.loadPrecincts(); });
      $("cp-precincts").replaceChildren(
        el("p", { class: "note", id: "precinct-count", role: "status", text: nf.format(from) + "\u2013" + nf.format(to) + " of " + nf.format(pg.matched) + " precincts" + (pg.matched !== pg.total ? " (of " + nf.format(pg.total) + ")" : "") }),
        scroller("Precinct list, scrollable table", table),
        el("p", { class: "pager" }, prev, " ", next));
    },

    async loadAudit() {
      const box = $("cp-audit");
      if (!box) return;
      const pid = this.precinct, cid = this.contest;
      if (!pid) { box.replaceChildren(); return; }
      try {
        const res = await fetch(api + "precincts/" + encodeURIComponent(pid), { headers: { Accept: "application/json" }, cache: "no-cache" });
        if (this.precinct !== pid || this.contest !== cid) return;
        if (!res.ok) {
          box.replaceChildren(el("p", { class: "note", text: "The audit trail is not available right now." }));
          return;
        }
        const first = !box.querySelector("[data-audit]");
        this.renderAudit(await res.json());
        if (first) $("audit-title").focus();
      } catch (err) { /* retried on the next update */ }
    },

    renderAudit(a) {
      const cid = this.contest;
      const p = a.precinct || {};
      const trail = (a.contests || []).find((t) => t.contest === cid) || { reports: [] };
      const votesText = (v) => Object.entries(v || {}).sort((x, y) => y[1] - x[1]).map(([k, n]) => candName(cid, k) + " " + nf.format(n)).join(", ");
      const when = (t) => { const d = new Date(t); return isNaN(d) ? "" : d.toLocaleString([], { dateStyle: "short", timeStyle: "medium" }); };
      const current = trail.current && trail.current.seq;
      const rows = trail.reports.map((sr) => {
        const r = sr.report || {};
        const corr = r.correction;
        return el("tr", { "data-audit-seq": sr.seq, "data-kind": corr ? "correction" : "report", class: sr.seq === current ? "current" : null },
          el("td", { class: "num", text: String(sr.seq) }),
          el("th", { scope: "row", text: (corr ? "Correction" : "Report") + (sr.seq === current ? " (counts now)" : "") }),
          el("td", { text: r.office || r.region || "" }),
          el("td", {}, el("time", { datetime: r.reported_at || "", text: when(r.reported_at) })),
          el("td", { text: votesText(r.votes) }),
          el("td", { text: r.complete ? "yes" : "no" }),
          el("td", { text: corr ? (corr.supersedes + " (seq " + corr.supersedes_seq + ")") : "" }),
          el("td", { class: "reason", text: corr ? corr.reason : "" }));
      });
      const table = el("table", { class: "data", id: "audit-table" },
        el("caption", { class: "sr-only", text: "Audit trail of " + (p.name || p.id) + ", in stream order" }),
        el("thead", {}, el("tr", {}, th("Seq", "num"), th("Event"), th("Sent by"), th("Reported at"), th("Votes"), th("Complete"), th("Supersedes"), th("Reason"))),
        el("tbody", {}, ...rows));
      this.box = $("cp-audit");
      this.box.replaceChildren(el("section", { "data-audit": p.id, "aria-labelledby": "audit-title" },
        el("h4", { id: "audit-title", tabindex: "-1", text: "Audit trail: " + (p.name || p.id) + ", " + (p.county || "") + " County" }),
        el("p", { class: "note", text: trail.reports.length ? "Every report and correction of this precinct, in the order the region stored them. The last one counts." : "No reports yet." }),
        trail.reports.length ? scroller("Audit trail, scrollable table", table) : null,
        el("p", {}, el("a", { href: "#/contest/" + encodeURIComponent(cid) }, "Close the audit trail"))));
    },
  };

  function route() {
    const m = /^#\/contest\/([^/]+)(?:\/precinct\/([^/]+))?$/.exec(location.hash);
    if (m) {
      page.show(decodeURIComponent(m[1]), m[2] ? decodeURIComponent(m[2]) : null);
      return;
    }
    if (page.contest) {
      const was = page.contest;
      page.hide();
      document.title = ((state.election && state.election.name) || "Election results") + " — Tally";
      const link = document.querySelector('[data-details="' + CSS.escape(was) + '"]');
      if (link) link.focus();
    }
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

  // connect opens the live stream. EventSource reconnects by itself with
  // Last-Event-ID; when it gives up (the gateway answered an error while
  // restarting) we open a new one that resumes from the last event seen.
  // After any reconnection the page re-reads what the stream does not
  // replay (the feed, the open contest's counties and precincts).
  let lastId = "";
  let retryDelay = 1000;
  let dropped = false;
  function connect() {
    const es = new EventSource(api + "stream" + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : ""));
    es.onopen = () => {
      setConnection("live", "live");
      retryDelay = 1000;
      if (dropped) {
        dropped = false;
        loadFeed();
        page.refresh();
      }
    };
    es.onerror = () => {
      dropped = true;
      if (es.readyState === EventSource.CLOSED) {
        setConnection("reconnecting", "offline, retrying in " + Math.round(retryDelay / 1000) + " s…");
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      } else {
        setConnection("reconnecting", "reconnecting…");
      }
    };
    es.addEventListener("contest", (ev) => {
      lastId = ev.lastEventId || lastId;
      const c = JSON.parse(ev.data);
      announceCall(state.contests.get(c.id), c);
      state.contests.set(c.id, c);
      renderContest(c);
    });
    es.addEventListener("contest-removed", (ev) => removeContest(JSON.parse(ev.data).id));
    es.addEventListener("regions", (ev) => {
      lastId = ev.lastEventId || lastId;
      state.regions = JSON.parse(ev.data) || [];
      renderRegions();
    });
    es.addEventListener("feed", (ev) => {
      lastId = ev.lastEventId || lastId;
      addFeed(JSON.parse(ev.data));
    });
    es.addEventListener("reset", () => {
      for (const id of Array.from(state.contests.keys())) removeContest(id);
      state.regions = [];
      renderRegions();
    });
  }

  function start() {
    loadElection();
    loadFeed();
    connect();
    window.addEventListener("hashchange", route);
    route();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
