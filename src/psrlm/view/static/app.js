// psrlm view: the page of the static site `psrlm view RUN_DIR` writes (psrlm/view/site.py writes its data).
//
// Data files are scripts that call psrlmView.put(key, data); load(key) adds a <script> tag for data/<key>.js.
// Browsers run such scripts from file:// (they block fetch() there), so the site opens without a server, and a
// search's file is loaded only when it is opened. Every text from the run (questions, candidate steps, the
// judge's explanations, answers) is model output or data: it enters the page as text nodes only, never as HTML.
"use strict";
(() => {
  // ------------------------------------------------------------------------------------------ data loading
  const store = new Map();
  const waiting = new Map();
  window.psrlmView = {
    put(key, data) {
      store.set(key, data);
      const w = waiting.get(key);
      if (w) { waiting.delete(key); w.resolve(data); }
    },
  };

  function load(key) {
    if (store.has(key)) return Promise.resolve(store.get(key));
    if (waiting.has(key)) return waiting.get(key).promise;
    const w = {};
    w.promise = new Promise((resolve, reject) => { w.resolve = resolve; w.reject = reject; });
    waiting.set(key, w);
    const s = document.createElement("script");
    s.src = "data/" + key + ".js";
    const fail = (why) => { if (waiting.get(key) === w) { waiting.delete(key); w.reject(new Error(why)); } };
    s.onerror = () => fail("could not load data/" + key + ".js (was the site copied whole?)");
    s.onload = () => { s.remove(); fail("data/" + key + ".js did not hand over its data"); };
    document.head.appendChild(s);
    return w.promise;
  }

  // -------------------------------------------------------------------------------------------------- DOM
  // h("div", {class: "x"}, "text", child): strings become text nodes, so model text can never become markup.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  const main = () => document.getElementById("main");
  const fmt = (x, d = 2) => (x == null ? "–" : Number.isInteger(x) ? String(x) : Number(x).toFixed(d));
  const score = (x) => (x == null ? "–" : Number.isInteger(x) ? String(x) : Number(x).toFixed(3));
  const pct = (a, b) => (b ? (100 * a / b).toFixed(1) + " %" : "–");
  const pill = (text, kind, title) => h("span", {class: "pill " + (kind || ""), title}, text);
  const okPill = (ok, why) => ok == null ? null : ok ? pill("✓ right", "ok", why) : pill("✗ wrong", "bad", why);
  const route = (path, params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) q.set(k, v);
    const s = q.toString();
    return "#/" + path + (s ? "?" + s : "");
  };

  let META = null;
  const ROWS = [];  // the search index, in file order (row[0] = the search's number)
  let indexLoaded = 0;
  let renderToken = 0;
  const C = {i: 0, source: 1, problem: 2, question: 3, solved: 4, finished: 5, pairs: 6, rounds: 7, rollbacks: 8,
             oracle_ok: 9, mixed: 10, pairs_right: 11, pairs_inverted: 12, stop: 13};
  const PAGE = 50;

  function sourceName(s) {
    return s.method === "tts" ? "test-time search by " + s.by : s.method + " · it" + s.it + " (searched by " + s.by + ")";
  }

  // ----------------------------------------------------------------------------------------------- routes
  function show() {
    const token = ++renderToken;
    const [path, qs] = location.hash.replace(/^#\/?/, "").split("?");
    const q = new URLSearchParams(qs || "");
    const parts = path.split("/").filter(Boolean);
    const tab = {t: "searches", e: "eval", eval: "eval", run: "run"}[parts[0]] || "searches";
    for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === tab);
    let view;
    if (parts[0] === "t") view = showSearch(+parts[1], token);
    else if (parts[0] === "eval" && parts.length > 1) view = showEval(+parts[1], q, token);
    else if (parts[0] === "eval") view = showEvals();
    else if (parts[0] === "e") view = showSample(+parts[1], +parts[2], token);
    else if (parts[0] === "run") view = showRun();
    else view = showSearches(q);
    Promise.resolve(view).then((node) => {
      if (token !== renderToken || !node) return;
      main().replaceChildren(node);
      if (!parts.length || parts[0] === "searches") return;
      window.scrollTo(0, 0);
    }).catch((err) => {
      if (token === renderToken) main().replaceChildren(h("p", {class: "error"}, String(err.message || err)));
    });
  }

  function banner() {
    const missing = META.stages.filter((s) => s.state !== "done");
    if (!missing.length) return null;
    return h("p", {class: "banner"}, "This run is not finished: " + missing.length + " stage" +
      (missing.length > 1 ? "s" : "") + " missing or partial (", h("a", {href: "#/run"}, "see Run"), ").");
  }

  // -------------------------------------------------------------------------------------- list of searches
  const ORACLE_FILTERS = {
    kept_right: ["kept steps all right", (r) => r[C.oracle_ok] === 1],
    kept_wrong: ["a kept step wrong", (r) => r[C.oracle_ok] === 0],
    mixed: ["a round mixed right and wrong candidates", (r) => r[C.mixed] > 0],
    pair_right: ["a pair the oracle calls right", (r) => r[C.pairs_right] > 0],
    pair_inverted: ["a pair the oracle calls inverted", (r) => r[C.pairs_inverted] > 0],
  };

  function filtered(q) {
    const m = q.get("method"), it = q.get("it"), solved = q.get("solved"), pairs = q.get("pairs");
    const oracle = ORACLE_FILTERS[q.get("oracle")];
    const text = (q.get("q") || "").toLowerCase();
    return ROWS.filter((r) => {
      const s = META.sources[r[C.source]];
      if (m && s.method !== m) return false;
      if (it && String(s.it) !== it) return false;
      if (solved === "yes" && r[C.solved] !== 1) return false;
      if (solved === "no" && r[C.solved] === 1) return false;
      if (pairs === "yes" && !r[C.pairs]) return false;
      if (pairs === "no" && r[C.pairs]) return false;
      if (oracle && !oracle[1](r)) return false;
      if (text && !r[C.problem].toLowerCase().includes(text) && !r[C.question].toLowerCase().includes(text)) return false;
      return true;
    });
  }

  function select(name, q, options, label) {
    const cur = q.get(name) || "";
    const el = h("select", {name, "aria-label": label,
      onchange: (e) => { const n = new URLSearchParams(q); n.set(name, e.target.value); n.delete("p"); go(n); }},
      options.map(([v, t]) => h("option", {value: v, selected: v === cur}, t)));
    return h("label", {}, label + " ", el);
  }

  function go(q) {
    for (const [k, v] of [...q.entries()]) if (!v) q.delete(k);
    const s = q.toString();
    location.hash = "#/searches" + (s ? "?" + s : "");
  }

  function showSearches(q) {
    if (!META) return null;
    const methods = [...new Set(META.sources.map((s) => s.method))];
    const its = [...new Set(META.sources.map((s) => s.it))].sort((a, b) => a - b);
    const bar = h("div", {class: "filters"},
      select("method", q, [["", "all"], ...methods.map((m) => [m, m])], "Method"),
      select("it", q, [["", "all"], ...its.map((i) => [String(i), String(i)])], "Iteration"),
      select("solved", q, [["", "all"], ["yes", "solved"], ["no", "not solved"]], "Answer"),
      select("pairs", q, [["", "all"], ["yes", "made pairs"], ["no", "no pairs"]], "Pairs"),
      META.oracle ? select("oracle", q, [["", "all"], ...Object.entries(ORACLE_FILTERS).map(([k, v]) => [k, v[0]])],
        "Oracle") : null,
      h("label", {}, "Find ", h("input", {type: "search", name: "q", value: q.get("q") || "",
        placeholder: "problem id or question text",
        onchange: (e) => { const n = new URLSearchParams(q); n.set("q", e.target.value); n.delete("p"); go(n); }})));
    const rows = filtered(q);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    const page = Math.min(pages, Math.max(1, +(q.get("p") || 1)));
    const shown = rows.slice((page - 1) * PAGE, page * PAGE);
    const loading = indexLoaded < META.chunks ? " (loading the list: " + indexLoaded + " of " + META.chunks + " parts)" : "";
    const pager = () => {
      const to = (p) => { const n = new URLSearchParams(q); n.set("p", p); return "#/searches?" + n.toString(); };
      return h("div", {class: "pager"},
        page > 1 ? h("a", {href: to(page - 1), class: "prev"}, "‹ previous") : h("span", {class: "dim"}, "‹ previous"),
        h("span", {}, " page " + page + " of " + pages + " "),
        page < pages ? h("a", {href: to(page + 1), class: "next"}, "next ›") : h("span", {class: "dim"}, "next ›"));
    };
    const table = h("table", {class: "list", id: "searches"},
      h("thead", {}, h("tr", {},
        ["problem", "search", "question", "rounds", "rollbacks", "pairs", "answer", META.oracle ? "oracle" : null]
          .map((t) => t && h("th", {}, t)))),
      h("tbody", {}, shown.map((r) => {
        const s = META.sources[r[C.source]];
        const href = "#/t/" + r[C.i];
        return h("tr", {onclick: (e) => { if (e.target.tagName !== "A") location.hash = href; }},
          h("td", {class: "mono"}, h("a", {href}, r[C.problem])),
          h("td", {class: "nowrap"}, s.method === "tts" ? "tts · " + s.by : s.method + " · it" + s.it),
          h("td", {class: "question"}, r[C.question]),
          h("td", {class: "num"}, r[C.rounds]),
          h("td", {class: "num"}, r[C.rollbacks] || ""),
          h("td", {class: "num"}, r[C.pairs] || ""),
          h("td", {}, r[C.solved] == null ? "–" : r[C.solved] ? pill("✓ solved", "ok") :
            pill(r[C.finished] ? "✗ wrong" : "✗ " + (r[C.stop] || "unfinished"), "bad")),
          META.oracle ? h("td", {}, oracleCell(r)) : null);
      })));
    return h("div", {},
      banner(),
      h("h2", {}, "Searches"),
      h("p", {class: "note"}, "One row per problem searched by one model: PSRLM's step search with self-judging, " +
        "SRLM's scored solutions, and test-time search in evaluation. Click a row to follow its search round by round."),
      bar,
      h("p", {class: "count"}, rows.length ? "Showing " + ((page - 1) * PAGE + 1) + "–" + ((page - 1) * PAGE + shown.length) +
        " of " + rows.length + " searches" + (rows.length !== ROWS.length ? " (" + ROWS.length + " in all)" : "") + loading
        : ROWS.length || loading ? "No search matches" + loading + "."
        : "This run has no search traces yet: the Run tab says which stages are missing."),
      pages > 1 ? pager() : null,
      table,
      pages > 1 ? pager() : null);
  }

  function oracleCell(r) {
    if (r[C.oracle_ok] == null) return "–";
    const bits = [r[C.oracle_ok] ? pill("steps ✓", "ok", "every kept step right") : pill("steps ✗", "bad", "a kept step is wrong")];
    if (r[C.pairs_right]) bits.push(pill(r[C.pairs_right] + " pair" + (r[C.pairs_right] > 1 ? "s" : "") + " ✓", "ok",
      "pairs whose chosen step is right and rejected step wrong"));
    if (r[C.pairs_inverted]) bits.push(pill(r[C.pairs_inverted] + " inverted", "bad",
      "pairs whose chosen step is wrong and rejected step right"));
    return bits;
  }

  // ------------------------------------------------------------------------------------------ one search
  const ACTIONS = {
    accept: ["accepted", "ok", "the best-scored step is kept; (best, worst) is a preference pair"],
    accept_unanimous: ["unanimous", "neutral", "every candidate was the same text: accepted, nothing to judge, no pair"],
    accept_all_right: ["all right", "neutral", "the oracle judge found every candidate right: one accepted, no pair"],
    accept_tie: ["tie → taken", "neutral", "all judged scores tied at test time: the most-sampled candidate is taken, no rollback, no pair"],
    rollback: ["tie → rollback", "warn", "all judged scores tied: no preference, so the previous step and its pair are discarded"],
    resample: ["tie → resample", "warn", "all scores tied at the first step: nothing to discard, drawn again"],
    resample_empty: ["nothing usable", "warn", "every candidate was empty or cut at the token cap: drawn again"],
    context: ["context full", "bad", "the prompt no longer fits the model's context: the search stops here"],
  };

  async function showSearch(i, token) {
    const d = await load("t/" + Math.floor(i / 1000) + "/" + i);
    if (token !== renderToken) return null;
    const src = META.sources[d.source];
    const nav = h("div", {class: "crumbs"}, h("a", {href: "#/", onclick: back}, "‹ back"), " · ",
      i > 0 ? h("a", {href: "#/t/" + (i - 1)}, "previous search") : null, i > 0 ? " · " : null,
      i + 1 < META.searches ? h("a", {href: "#/t/" + (i + 1)}, "next search") : null);
    const s = d.stats;
    const facts = h("div", {class: "facts"},
      fact("gold answer", d.answer == null ? "unknown" : d.answer),
      fact("final answer", d.final == null ? "none" : d.final,
        d.solved == null ? null : d.solved ? pill("✓ solved", "ok") : pill("✗ not solved", "bad")),
      fact("stopped", d.stop || "–"),
      fact("rounds", s.rounds_used), fact("rollbacks", s.rollbacks), fact("ties", s.ties),
      fact("judge calls", s.judge_calls), fact("no verdict", s.no_verdicts), fact("tokens", s.gen_tokens),
      s.capped ? fact("cut at the token cap", s.capped) : null, fact("pairs", d.pairs.length));
    const head = h("div", {},
      nav,
      h("h2", {id: "problem-title"}, "Problem ", h("span", {class: "mono"}, d.id)),
      h("p", {class: "sub"}, sourceName(src), " · ", h("span", {class: "mono"}, src.path)),
      d.question == null ? h("p", {class: "warn-text"}, "The question is not in the run's data files.")
        : h("blockquote", {class: "question"}, d.question),
      facts);
    const body = d.kind === "solutions" ? solutionsView(d) : stepsView(d);
    return h("div", {class: "search"}, head, body, pairsView(d));
  }

  function back(e) {
    e.preventDefault();
    if (history.length > 1) history.back(); else location.hash = "#/";
  }

  function fact(label, value, extra) {
    return h("div", {class: "fact"}, h("span", {class: "label"}, label), h("span", {class: "value"}, value), extra || null);
  }

  function stepList(steps, withRound, empty) {
    if (!steps.length) return empty || h("p", {class: "dim"}, "No step kept.");
    return h("ol", {class: "steps"}, steps.map((s, k) => h("li", {class: s.ok === false ? "wrong" : s.ok ? "right" : ""},
      h("span", {class: "stepno"}, "Step " + (k + 1)), h("span", {class: "text"}, s.text),
      okPill(s.ok, s.why), s.ok === false ? h("span", {class: "why"}, s.why) : null,
      withRound && s.round ? h("a", {class: "round-link", href: "#round-" + s.round,
        onclick: (e) => { e.preventDefault(); jump(s.round); }}, "round " + s.round) : null)));
  }

  function jump(n) {
    const el = document.getElementById("round-" + n);
    if (el) { el.scrollIntoView({block: "start"}); el.classList.add("flash"); setTimeout(() => el.classList.remove("flash"), 900); }
  }

  function stepsView(d) {
    const roundsByN = new Map(d.rounds.map((r) => [r.n, r]));
    const keptText = (n) => { const r = roundsByN.get(n); return r && r.cands[r.best] ? r.cands[r.best].text : "?"; };
    return h("div", {},
      h("h3", {}, "Solution: the kept steps"),
      d.replay_ok ? null : h("p", {class: "warn-text"},
        "Replaying the rounds does not give the trace's final steps: the trace file may be damaged."),
      stepList(d.steps, true),
      h("h3", {}, "The search, round by round"),
      h("p", {class: "note"}, "Each round drew candidate next steps after the context shown; the model judged pairs " +
        "of the distinct ones (every ordered pair: both A/B orders); a candidate's score is its wins (Eq. 2). " +
        "The best is kept and (best, worst) becomes a preference pair; a tie discards the previous step and its pair."),
      d.rounds.length ? overview(d.rounds) : null,
      d.rounds.length ? d.rounds.map((r) => roundView(r, d, keptText)) : h("p", {class: "dim"}, "No rounds recorded."));
  }

  // One box per round, coloured by what the round did: the shape of the search at a glance (click to jump).
  function overview(rounds) {
    return h("div", {class: "overview", "aria-label": "rounds"}, rounds.map((r) => {
      const [label, kind] = ACTIONS[r.action] || [r.action || "?", "neutral"];
      const wrongKept = r.best != null && r.cands[r.best] && r.cands[r.best].ok === false;
      return h("a", {class: "ov " + kind + (wrongKept ? " wrong-kept" : "") + (r.discarded_by ? " discarded" : ""),
        href: "#round-" + r.n, title: "Round " + r.n + ", step " + r.step + ": " + label +
          (wrongKept ? " (the oracle calls the kept step wrong)" : "") +
          (r.discarded_by ? " (its step discarded in round " + r.discarded_by + ")" : ""),
        onclick: (e) => { e.preventDefault(); jump(r.n); }}, h("span", {}, "R" + r.n), h("small", {}, "s" + r.step));
    }), h("span", {class: "ov-legend dim"}, "green: accepted with a pair · grey: accepted, nothing to judge · " +
      "amber: tie (rollback or resample) · struck out: its step was later discarded · red outline: the oracle calls " +
      "the kept step wrong"));
  }

  function roundView(r, d, keptText) {
    const [label, kind, why] = ACTIONS[r.action] || [r.action || "?", "neutral", ""];
    const distinct = r.cands.length;
    if (r.action === "accept_unanimous" && distinct === 1) {  // nothing was judged: one line is the whole story
      const c = r.cands[0];
      return h("section", {class: "round compact " + kind, id: "round-" + r.n},
        h("div", {class: "round-head"}, h("span", {class: "round-no"}, "Round " + r.n),
          h("span", {class: "round-step"}, "Step " + r.step), pill(label, kind, why),
          h("span", {class: "dim"}, r.drawn + " drawn, all"), h("span", {class: "text"}, "“" + c.text + "”"),
          okPill(c.ok, c.why), c.ok === false ? h("span", {class: "why"}, c.why) : null,
          h("span", {class: "dim"}, "kept, no pair"), discardedNote(r)));
    }
    const head = h("div", {class: "round-head"},
      h("span", {class: "round-no"}, "Round " + r.n), h("span", {class: "round-step"}, "Step " + r.step),
      pill(label, kind, why), discardedNote(r),
      h("span", {class: "dim"}, [r.drawn + " drawn", distinct !== r.drawn ? distinct + " distinct" : null,
        r.judge_calls ? r.judge_calls + " judge calls" : null,
        r.no_verdicts ? r.no_verdicts + " without a verdict" : null].filter(Boolean).join(" · ")));
    const ctx = r.ctx.length
      ? h("details", {class: "context"}, h("summary", {}, "Context: the question and " + r.ctx.length + " kept step" +
          (r.ctx.length > 1 ? "s" : "") + " (last: Step " + r.ctx.length + ": ", h("span", {class: "text"},
          keptText(r.ctx[r.ctx.length - 1])), ")"),
        h("ol", {class: "steps small"}, r.ctx.map((n) => h("li", {}, h("span", {class: "text"}, keptText(n)),
          h("a", {class: "round-link", href: "#round-" + n, onclick: (e) => { e.preventDefault(); jump(n); }},
            "kept in round " + n)))))
      : h("p", {class: "context dim"}, "Context: the question alone (first step).");
    const parts = [head, ctx];
    if (distinct) parts.push(candidatesTable(r, d));
    if (r.judgments && r.judgments.length) parts.push(matrixView(r));
    else if (distinct > 1 && !r.judgments) parts.push(h("p", {class: "dim"}, "This trace does not record the judgments."));
    parts.push(outcome(r, keptText));
    return h("section", {class: "round " + kind, id: "round-" + r.n}, parts);
  }

  const cname = (k) => "#" + (k + 1);

  function discardedNote(r) {
    if (!r.discarded_by) return null;
    return h("a", {class: "pill warn", href: "#round-" + r.discarded_by, title: "a tie in a later round discarded this step",
      onclick: (e) => { e.preventDefault(); jump(r.discarded_by); }}, "step discarded in round " + r.discarded_by);
  }

  function candidatesTable(r, d) {
    const max = Math.max(0, ...r.cands.map((c) => c.score || 0));
    const showOracle = d.oracle;
    return h("table", {class: "cands"},
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "candidate step"), h("th", {}, "drawn"),
        h("th", {}, "score"), showOracle ? h("th", {}, "oracle") : null, h("th", {}, ""))),
      h("tbody", {}, r.cands.map((c, k) => {
        const role = k === r.best ? (r.action === "accept" ? "kept" : "kept (no pair)") : k === r.worst ? "rejected" : "";
        return h("tr", {class: k === r.best ? "best" : k === r.worst ? "worst" : ""},
          h("td", {class: "cname"}, cname(k)),
          h("td", {class: "text"}, c.text),
          h("td", {class: "num"}, c.dup > 1 ? "×" + c.dup : "1"),
          h("td", {class: "score"}, c.score == null ? "–" : [h("span", {class: "bar", style: "width:" +
            (max > 0 ? Math.round(60 * c.score / max) : 0) + "px"}), " " + score(c.score)]),
          showOracle ? h("td", {}, okPill(c.ok, c.why), c.ok === false ? h("div", {class: "why"}, c.why) : null) : null,
          h("td", {}, role ? pill(role, k === r.best ? "ok" : "bad") : null));
      })));
  }

  // The verdict matrix: cell (row i, column j) holds both orders of the pair from i's side. Left mark: i shown as
  // Step A (j as B); right mark: j as A, i as B. W: the judge preferred i; L: it preferred j; ?: no verdict.
  function matrixView(r) {
    const n = r.cands.length;
    const at = new Map();
    r.judgments.forEach((j, k) => at.set(j[0] + "," + j[1], k));
    const detail = h("div", {class: "judgment-detail", hidden: true});
    const mark = (row, a, b) => {
      const k = at.get(a + "," + b);
      if (k === undefined) return h("span", {class: "mark none", title: "not judged in this order"}, "");
      const [, , verdict, pA] = r.judgments[k];
      const pRow = pA == null ? null : row === a ? pA : 1 - pA;
      const won = verdict == null ? null : (verdict === "A") === (row === a);
      const cls = won == null ? "nv" : won ? "win" : "loss";
      const what = (row === a ? cname(row) + " as A, " + cname(b) + " as B" : cname(a) + " as A, " + cname(row) + " as B") +
        ": " + (verdict ? "[[" + verdict + "]]" : "no verdict") + (pA == null ? "" : ", P(A) = " + fmt(pA, 3));
      return h("span", {class: "mark " + cls, title: what}, won == null ? "?" : won ? "W" : "L",
        pRow == null ? null : h("small", {}, fmt(pRow, 2)));
    };
    const open = (i, j) => {
      detail.hidden = false;
      detail.replaceChildren(h("div", {class: "jd-head"}, cname(i) + " vs " + cname(j)),
        ...[[i, j], [j, i]].map(([a, b]) => judgmentText(r, at.get(a + "," + b), a, b)));
    };
    const table = h("table", {class: "matrix"},
      h("thead", {}, h("tr", {}, h("th", {class: "corner"}, "row vs column"),
        [...Array(n).keys()].map((j) => h("th", {}, cname(j))), h("th", {}, "score"))),
      h("tbody", {}, [...Array(n).keys()].map((i) => h("tr", {class: i === r.best ? "best" : i === r.worst ? "worst" : ""},
        h("th", {}, cname(i)),
        [...Array(n).keys()].map((j) => i === j ? h("td", {class: "diag"}, "") :
          h("td", {class: "cell", title: "click for the judge's explanations", onclick: () => open(i, j)},
            mark(i, i, j), mark(i, j, i))),
        h("td", {class: "num"}, score(r.cands[i].score))))));
    const all = r.explanations ? h("details", {class: "all-judgments"}, h("summary", {}, "All " + r.judgments.length +
      " judgments with their explanations"), r.judgments.map((j, k) => judgmentText(r, k, j[0], j[1]))) : null;
    return h("div", {class: "matrix-wrap"},
      h("div", {class: "matrix-legend"}, "Verdict matrix: each cell is the row candidate against the column one in " +
        "both orders (left: the row shown as Step A, right: as Step B). ", h("span", {class: "mark win"}, "W"),
        " judge preferred the row, ", h("span", {class: "mark loss"}, "L"), " preferred the column, ",
        h("span", {class: "mark nv"}, "?"), " no verdict. ",
        r.explanations ? "Click a cell for the judge's explanations." : "Verdicts read from the model's log-probabilities " +
          "(no explanation was generated): small numbers are P(row is better)."),
      table, detail, all);
  }

  function judgmentText(r, k, a, b) {
    if (k === undefined) return h("div", {class: "jd"}, h("div", {class: "jd-order"}, cname(a) + " as A, " + cname(b) +
      " as B: not judged in this order"));
    const [, , verdict, pA] = r.judgments[k];
    const winner = verdict === "A" ? a : verdict === "B" ? b : null;
    const text = r.explanations ? r.explanations[k] : null;
    return h("div", {class: "jd"},
      h("div", {class: "jd-order"}, "Step A = " + cname(a) + ", Step B = " + cname(b) + " → ",
        verdict ? h("b", {}, "[[" + verdict + "]]") : h("b", {}, "no verdict"),
        winner == null ? "" : " (" + cname(winner) + " preferred)", pA == null ? "" : ", P(A) = " + fmt(pA, 3)),
      text == null ? null : h("pre", {class: "explanation"}, text || "(empty)"));
  }

  function outcome(r, keptText) {
    if (r.action === "accept") {
      const b = r.cands[r.best], w = r.cands[r.worst];
      const p = r.pair || {};
      const state = p.state === "trained" ? pill("in pairs.jsonl", "ok", "this pair is in the search's pairs.jsonl: DPO trains on it")
        : p.state === "discarded" ? [pill("discarded", "warn"), " by the rollback in ",
          h("a", {href: "#round-" + p.by, onclick: (e) => { e.preventDefault(); jump(p.by); }}, "round " + p.by)]
        : p.state === "missing" ? pill("not in pairs.jsonl", "bad", "the replay keeps this pair but pairs.jsonl lacks it") : null;
      return h("p", {class: "outcome"}, "Kept ", h("b", {}, cname(r.best)), " (score " + score(b.score) + "). Pair: chosen " +
        cname(r.best) + " ≻ rejected " + cname(r.worst) + " (score " + score(w.score) + ") ", state);
    }
    if (r.action === "rollback") {
      return h("p", {class: "outcome"}, "Scores tied (" + r.cands.map((c) => score(c.score)).join(", ") + "): Step " +
        (r.step - 1) + " ", h("span", {class: "text"}, "“", r.dropped ? keptText(r.dropped) : "?", "”"),
        " kept in ", h("a", {href: "#round-" + r.dropped, onclick: (e) => { e.preventDefault(); jump(r.dropped); }},
          "round " + r.dropped), " is discarded with its pair; the search goes on from Step " + (r.step - 1) + ".");
    }
    const why = (ACTIONS[r.action] || [])[2];
    return why ? h("p", {class: "outcome dim"}, why[0].toUpperCase() + why.slice(1) + ".") : null;
  }

  function solutionsView(d) {
    return h("div", {},
      h("h3", {}, "Kept solution (the chosen one; the first sampled when there is no preference)"),
      stepList(d.steps, false),
      h("h3", {}, "Solutions sampled and scored by the model (SRLM: whole solutions, 5-point scale)"),
      d.best == null ? h("p", {class: "outcome"}, "No preference: the best and worst scores tie (or fewer than two " +
        "solutions were scored), so no pair.") : h("p", {class: "outcome"}, "Chosen " + cname(d.best) + " ≻ rejected " +
        cname(d.worst) + " ", d.pair_in_file ? pill("in pairs.jsonl", "ok") : pill("not in pairs.jsonl", "bad")),
      d.solutions.length ? d.solutions.map((s, k) => h("section", {class: "solution " + (s.role === "chosen" ? "best" :
        s.role === "rejected" ? "worst" : "")},
        h("div", {class: "round-head"}, h("span", {class: "round-no"}, "Solution " + cname(k)),
          h("span", {}, s.score == null ? "no score (no “Score: X” could be read)" : "score " + score(s.score)),
          s.role ? pill(s.role, s.role === "chosen" ? "ok" : "bad") : null,
          h("span", {}, "answer " + (s.answer == null ? "none" : s.answer)),
          s.correct == null ? null : s.correct ? pill("✓ correct answer", "ok") : pill("✗ wrong answer", "bad"),
          d.oracle && s.ok != null ? (s.ok ? pill("steps ✓", "ok", "the oracle calls every step right")
            : pill("steps ✗", "bad", "the oracle calls a step wrong")) : null),
        stepList(s.steps, false)))
        : h("p", {class: "dim"}, "No solution was scored (every one cut at the token cap, or the prompt did not fit)."));
  }

  function pairsView(d) {
    if (!d.pairs.length) return h("div", {}, h("h3", {}, "Pairs"), h("p", {class: "dim"}, "This search made no pair " +
      "that survived (pairs.jsonl has none for this problem)."));
    const verdict = (p) => p.chosen_ok == null ? null : p.chosen_ok && !p.rejected_ok ? pill("right", "ok")
      : !p.chosen_ok && p.rejected_ok ? pill("inverted", "bad") : pill(p.chosen_ok ? "both right" : "both wrong", "neutral");
    return h("div", {},
      h("h3", {}, "Pairs in pairs.jsonl (what DPO trains on)"),
      h("table", {class: "pairs"}, h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", {}, "chosen"),
        h("th", {}, "rejected"), h("th", {}, "scores"), d.oracle ? h("th", {}, "oracle") : null)),
      h("tbody", {}, d.pairs.map((p) => h("tr", {}, h("td", {class: "num"}, p.step == null ? "whole" : p.step),
        h("td", {class: "text"}, p.chosen), h("td", {class: "text"}, p.rejected),
        h("td", {class: "num"}, score(p.chosen_score) + " vs " + score(p.rejected_score)),
        d.oracle ? h("td", {}, verdict(p)) : null)))));
  }

  // ------------------------------------------------------------------------------------------- evaluation
  function showEvals() {
    if (!META) return null;
    if (!META.evals.length) return h("div", {}, banner(), h("h2", {}, "Evaluation"),
      h("p", {class: "dim"}, "No evaluation results in eval/ yet."));
    // models down, benchmarks across: each cell is one result file, opened by a click
    const models = [...new Set(META.evals.map((e) => e.model))];
    const benches = [...new Set(META.evals.map((e) => e.bench))];
    const at = new Map(META.evals.map((e) => [e.model + "\u0000" + e.bench, e]));
    const tts = META.sources.some((s) => s.method === "tts");
    return h("div", {}, banner(), h("h2", {}, "Evaluation"),
      h("p", {class: "note"}, "Greedy answers per model and benchmark (eval/<model>/<benchmark>.jsonl): accuracy, " +
        "then per sample the model's response, the answer extracted from it and the grader's verdict.",
        tts ? [" Test-time search traces are with the ", h("a", {href: route("searches", {method: "tts"})},
          "searches (method tts)"), "."] : null),
      h("table", {class: "list", id: "evals"}, h("thead", {}, h("tr", {}, h("th", {}, "model"),
        benches.map((b) => h("th", {class: "num"}, b)))),
      h("tbody", {}, models.map((m) => h("tr", {}, h("td", {class: "mono"}, m), benches.map((b) => {
        const e = at.get(m + "\u0000" + b);
        return h("td", {class: "num"}, e ? h("a", {href: "#/eval/" + e.k, title: e.correct + " of " + e.n + " correct"},
          pct(e.correct, e.n), h("span", {class: "dim"}, " (" + e.correct + "/" + e.n + ")")) : "–");
      }))))));
  }

  const EVAL_FILTERS = {
    correct: ["correct", (r) => r[2] === 1], wrong: ["wrong", (r) => r[2] === 0],
    none: ["no answer", (r) => r[3] == null], cap: ["hit the token cap", (r) => r[5] === "length"],
    steps_wrong: ["a step wrong (oracle)", (r) => r[8] === 0], steps_right: ["every step right (oracle)", (r) => r[8] === 1],
  };

  async function showEval(k, q, token) {
    const e = META.evals[k];
    if (!e) throw new Error("no evaluation #" + k);
    const idx = await load("ev/" + k + "/index");
    if (token !== renderToken) return null;
    const f = EVAL_FILTERS[q.get("show")];
    const rows = f ? idx.rows.filter(f[1]) : idx.rows;
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    const page = Math.min(pages, Math.max(1, +(q.get("p") || 1)));
    const shown = rows.slice((page - 1) * PAGE, page * PAGE);
    const base = (extra) => route("eval/" + k, {show: q.get("show") || "", ...extra});
    const filters = Object.entries(EVAL_FILTERS).filter(([key]) => e.oracle || !key.startsWith("steps"));
    return h("div", {},
      h("div", {class: "crumbs"}, h("a", {href: "#/eval"}, "‹ all evaluations")),
      h("h2", {}, e.model + " on " + e.bench),
      h("p", {class: "sub"}, e.correct + " of " + e.n + " correct (" + pct(e.correct, e.n) + ") · ",
        h("span", {class: "mono"}, e.path)),
      h("div", {class: "filters"}, h("label", {}, "Show ", h("select", {name: "show",
        onchange: (ev) => { location.hash = route("eval/" + k, {show: ev.target.value}); }},
        h("option", {value: ""}, "all"), filters.map(([key, v]) => h("option", {value: key, selected: key === q.get("show")}, v[0]))))),
      h("p", {class: "count"}, rows.length + " sample" + (rows.length === 1 ? "" : "s")),
      pages > 1 ? h("div", {class: "pager"}, page > 1 ? h("a", {href: base({p: page - 1})}, "‹ previous") : null,
        " page " + page + " of " + pages + " ", page < pages ? h("a", {href: base({p: page + 1})}, "next ›") : null) : null,
      h("table", {class: "list", id: "samples"}, h("thead", {}, h("tr", {}, ["#", "problem", "answer", "gold", "grader",
        "finish", "tokens", "steps", e.oracle ? "oracle" : null].map((t) => t && h("th", {}, t)))),
      h("tbody", {}, shown.map((r) => h("tr", {onclick: () => { location.hash = "#/e/" + k + "/" + r[0]; }},
        h("td", {class: "num"}, h("a", {href: "#/e/" + k + "/" + r[0]}, r[0] + 1)), h("td", {class: "mono"}, r[1]),
        h("td", {class: "mono"}, r[3] == null ? "none" : r[3]), h("td", {class: "mono"}, r[4] == null ? "" : r[4]),
        h("td", {}, r[2] ? pill("✓ correct", "ok") : pill("✗ wrong", "bad")), h("td", {}, r[5]),
        h("td", {class: "num"}, r[6]), h("td", {class: "num"}, r[7]),
        e.oracle ? h("td", {}, r[8] == null ? "–" : r[8] ? pill("steps ✓", "ok") : pill("steps ✗", "bad")) : null)))));
  }

  async function showSample(k, n, token) {
    const e = META.evals[k];
    if (!e) throw new Error("no evaluation #" + k);
    const idx = await load("ev/" + k + "/index");
    const chunk = await load("ev/" + k + "/" + Math.floor(n / idx.chunk));
    if (token !== renderToken) return null;
    const s = chunk.rows.find((r) => r.n === n);
    if (!s) throw new Error("no sample " + (n + 1) + " in " + e.model + " on " + e.bench);
    return h("div", {class: "sample"},
      h("div", {class: "crumbs"}, h("a", {href: "#/eval/" + k}, "‹ " + e.model + " on " + e.bench), " · ",
        n > 0 ? h("a", {href: "#/e/" + k + "/" + (n - 1)}, "previous") : null, n > 0 ? " · " : null,
        n + 1 < e.n ? h("a", {href: "#/e/" + k + "/" + (n + 1)}, "next") : null),
      h("h2", {}, "Sample " + (n + 1) + " · ", h("span", {class: "mono"}, s.id)),
      s.question ? h("blockquote", {class: "question"}, s.question) : null,
      h("div", {class: "facts"}, fact("extracted answer", s.extracted == null ? "none" : s.extracted),
        fact("gold", s.gold == null ? "–" : s.gold), fact("grader", "", s.correct ? pill("✓ correct", "ok") : pill("✗ wrong", "bad")),
        fact("finish", s.finish || "–"), fact("tokens", s.tokens)),
      h("h3", {}, "The model's answer"),
      stepList(s.steps, false, h("div", {}, h("p", {class: "dim"}, "The response has no step; as written:"),
        h("pre", {}, s.response || "(empty)"))),
      h("details", {}, h("summary", {}, "Raw response and prompt"), h("h4", {}, "response"), h("pre", {}, s.response),
        h("h4", {}, "prompt"), h("pre", {}, s.prompt)));
  }

  // -------------------------------------------------------------------------------------------------- run
  function showRun() {
    if (!META) return null;
    return h("div", {},
      h("h2", {}, "Run " + META.run),
      h("p", {class: "sub"}, h("span", {class: "mono"}, META.run_dir), " · site built " + META.built),
      h("h3", {}, "Stages"),
      h("table", {class: "list", id: "stages"}, h("tbody", {}, META.stages.map((s) => h("tr", {},
        h("td", {class: "mono"}, s.name), h("td", {}, pill(s.state, s.state === "done" ? "ok" : s.state === "partial" ? "warn" : "bad")),
        h("td", {}, s.detail))))),
      h("h3", {}, "Searches in this site"),
      META.sources.length ? h("table", {class: "list"}, h("thead", {}, h("tr", {}, ["folder", "what", "problems", "pairs",
        "solved"].map((t) => h("th", {}, t)))), h("tbody", {}, META.sources.map((s) => h("tr", {},
        h("td", {class: "mono"}, h("a", {href: route("searches", {method: s.method, it: s.it})}, s.path)),
        h("td", {}, sourceName(s)), h("td", {class: "num"}, s.traces), h("td", {class: "num"}, s.pairs),
        h("td", {class: "num"}, s.solved + " (" + pct(s.solved, s.traces) + ")"))))) :
        h("p", {class: "dim"}, "No search traces yet."));
  }

  // -------------------------------------------------------------------------------------------------- start
  load("meta").then((meta) => {
    META = meta;
    document.getElementById("run-name").textContent = meta.run;
    document.title = "psrlm view · " + meta.run;
    show();
    window.addEventListener("hashchange", show);
    const parts = [...Array(meta.chunks).keys()].map((c) => load("index/" + c).then((chunk) => ({c, chunk})));
    // chunks arrive in any order; rows are kept in file order and the list redraws as they come
    const got = new Array(meta.chunks);
    parts.forEach((p) => p.then(({c, chunk}) => {
      got[c] = chunk.rows;
      indexLoaded += 1;
      ROWS.length = 0;
      for (const rows of got) if (rows) ROWS.push(...rows);
      const hash = location.hash.replace(/^#\/?/, "");
      if (!hash || hash.startsWith("searches")) show();
    }));
    return Promise.all(parts);
  }).catch((err) => {
    main().replaceChildren(h("p", {class: "error"}, "This viewer could not load its data: " + (err.message || err) +
      ". Rebuild it with `psrlm view RUN_DIR`."));
  });
})();
