/* oneplan console: shared helpers. No inline scripts (strict CSP); every figure comes from a
   JSON endpoint; times in the viewer's time zone, numbers with separators and units. */
(function () {
  "use strict";
  var T = JSON.parse(document.getElementById("strings").textContent);
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.content : "";
  var TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  var nf = new Intl.NumberFormat(undefined);
  var nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  var money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 });
  var dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var tf = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var PALETTE = ["#3a5ccc", "#1d8a4e", "#d9822b", "#8e44ad", "#c23b3b", "#0097a7", "#7f8c2d", "#b5468b"];

  function t(key, vars) {
    var s = T[key] || key;
    if (vars) Object.keys(vars).forEach(function (k) { s = s.split("{" + k + "}").join(vars[k]); });
    return s;
  }

  function api(method, url, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = CSRF;
      if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    }
    return fetch(url, opts).then(function (r) {
      if (r.status === 401) { window.location.assign("/console/sign-in"); throw new Error("signed out"); }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
        return data;
      });
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  function fill(id, node) {
    var box = document.getElementById(id);
    box.textContent = "";
    box.appendChild(node);
  }

  function failed(id) {
    return function (err) {
      if (err.message === "signed out") return;
      fill(id, el("p", { class: "error", role: "alert", text: t("load_failed", { error: err.message }) }));
    };
  }

  function num(v) { return v == null ? "–" : nf.format(v); }
  function ms(v) { return v == null ? "–" : (v >= 1000 ? nf1.format(v / 1000) + " s" : nf.format(Math.round(v)) + " ms"); }
  function pct(v) { return nf1.format(v * 100) + " %"; }
  function cost(v) { return v == null ? "–" : money.format(v); }
  function when(ts) { return ts == null ? "–" : dtf.format(new Date(ts * 1000)); }
  function clock(ts) {
    var d = new Date(ts * 1000), today = new Date();
    return d.toDateString() === today.toDateString() ? tf.format(d) : dtf.format(d);
  }
  function unitValue(unit, v) { return unit === "cost" ? cost(v) : num(v); }

  /* A table from columns [{key, label, num, fmt}] and rows; an empty state when there are none. */
  function table(columns, rows, empty) {
    if (!rows.length) return el("p", { class: "empty", text: empty || t("empty_table") });
    var head = el("tr", {}, columns.map(function (c) { return el("th", { scope: "col", class: c.num ? "num" : "", text: c.label }); }));
    var body = rows.map(function (r) {
      return el("tr", {}, columns.map(function (c) {
        var v = c.fmt ? c.fmt(r[c.key], r) : r[c.key];
        var cell = el("td", { class: (c.num ? "num" : "") + (c.cls ? " " + c.cls : "") });
        if (v instanceof Node) cell.appendChild(v); else cell.textContent = v == null ? "–" : String(v);
        if (c.test) cell.setAttribute("data-" + c.test, r[c.key] == null ? "" : String(r[c.key]));
        return cell;
      }));
    });
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  /* A stacked bar chart (uPlot) of one metric per series over the steps' start times. */
  var charts = {}, drawn = {};
  function chart(id, data, metric, key) {
    var box = document.getElementById(id);
    drawn[id] = [data, metric, key];
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    box.textContent = "";
    var series = data.series.filter(function (s) { return s[metric].some(function (v) { return v; }); });
    if (!series.length) { box.appendChild(el("p", { class: "empty", text: t("empty_chart") })); return; }
    var xs = data.starts;
    var running = xs.map(function () { return 0; });
    var stacked = series.map(function (s) {
      running = running.map(function (v, i) { return v + (s[metric][i] || 0); });
      return running.slice();
    });
    var order = stacked.map(function (_, i) { return i; }).reverse();
    var style = getComputedStyle(document.documentElement);
    var axis = { stroke: style.getPropertyValue("--muted").trim(), grid: { stroke: style.getPropertyValue("--line").trim(), width: 1 },
                 ticks: { stroke: style.getPropertyValue("--line").trim() } };
    var bars = uPlot.paths.bars({ size: [0.85, 40] });
    var opts = {
      width: Math.max(280, Math.floor(box.getBoundingClientRect().width)), height: 300,
      scales: { x: { time: true } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(order.map(function (i) {
        var color = PALETTE[i % PALETTE.length];
        return { label: series[i].other ? t("others") : String(series[i][key]), stroke: color, fill: color, paths: bars, points: { show: false },
                 value: function (u, v) { return v == null ? "–" : unitValue(metric, v); } };
      })),
      axes: [axis, Object.assign({ size: 60, values: function (u, vals) { return vals.map(function (v) { return metric === "cost" ? cost(v) : nf.format(v); }); } }, axis)],
    };
    box.setAttribute("data-scheme", window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    charts[id] = new uPlot(opts, [xs].concat(order.map(function (i) { return stacked[i]; })), box);
  }
  /* Follow the container's width, and redraw in the other palette when the scheme changes. */
  function redraw() { Object.keys(drawn).forEach(function (id) { chart.apply(null, [id].concat(drawn[id])); }); }
  var observer = new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var u = charts[entry.target.id];
      var width = Math.max(280, Math.floor(entry.contentRect.width));
      if (u && Math.abs(u.width - width) > 2) u.setSize({ width: width, height: 300 });
    });
  });
  document.querySelectorAll(".chart").forEach(function (box) { observer.observe(box); });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);

  /* Copy buttons: data-copy names the element whose text is copied. */
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("button.copy");
    if (!button) return;
    var text = document.getElementById(button.getAttribute("data-copy")).textContent;
    var done = function () { var old = button.textContent; button.textContent = t("copied"); setTimeout(function () { button.textContent = old; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, done);
    else {
      var area = el("textarea", {}); area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
      area.remove(); done();
    }
  });

  /* The weekly digest (GET /v1/insights): this week against last, shares, limit hits, suggestions. */
  function digest(data, emptyText) {
    var f = data.figures, tw = f.this_week, lw = f.last_week, ch = f.change_percent;
    document.getElementById("insights-week").textContent = t("week_of", { date: new Date(f.week_start * 1000).toLocaleDateString() });
    if (!tw.requests && !lw.requests && !f.limit_hits.total) return el("p", { class: "empty", text: emptyText });
    function change(v) { return v == null ? "–" : (v > 0 ? "+" : "") + nf1.format(v) + " %"; }
    var totals = table([
      { key: "what", label: "" },
      { key: "this", label: t("this_week"), num: true, test: "this" },
      { key: "last", label: t("last_week"), num: true },
      { key: "change", label: t("change"), num: true, fmt: change },
    ], [
      { what: t("requests"), this: num(tw.requests), last: num(lw.requests), change: ch.requests },
      { what: t("tokens"), this: num(tw.tokens), last: num(lw.tokens), change: ch.tokens },
      { what: t("cost"), this: cost(tw.cost), last: cost(lw.cost), change: ch.cost },
    ]);
    var hits = f.limit_hits;
    var facts = [
      [t("model_share"), f.models.map(function (m) { return m.model + " " + pct(m.share); }).join(", ") || "–"],
      [t("limit_hits"), hits.total ? num(hits.total) + " (" + Object.keys(hits.by_window).map(function (w) { return w + " " + hits.by_window[w]; }).join(", ") + ")" : t("none")],
      [t("cache_hits"), f.cache_hit_share == null ? "–" : pct(f.cache_hit_share)],
      [t("busiest_hours"), f.busiest_hours.map(function (h) { return (h.hour < 10 ? "0" : "") + h.hour + ":00 (" + num(h.requests) + ")"; }).join(", ") || "–"],
      [t("slowest_model"), f.slowest_model ? f.slowest_model.model + " · " + ms(f.slowest_model.ttft_median_ms) : "–"],
    ];
    var list = el("dl", { class: "facts" }, [].concat.apply([], facts.map(function (p) { return [el("dt", { text: p[0] }), el("dd", { text: p[1] })]; })));
    var tips = f.suggestions.length
      ? el("ul", { class: "tips", id: "insights-suggestions" }, f.suggestions.map(function (s) { return el("li", { text: s }); }))
      : el("p", { class: "muted", text: t("no_suggestions") });
    return el("div", { class: "digest" }, [el("div", { class: "scroll" }, [totals]), list, el("h3", { text: t("suggestions") }), tips]);
  }

  window.Console = { t: t, api: api, el: el, fill: fill, failed: failed, table: table, chart: chart, num: num, ms: ms,
                     pct: pct, cost: cost, when: when, clock: clock, unitValue: unitValue, TZ: TZ, digest: digest };
})();
