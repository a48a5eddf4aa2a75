/* The developer's page: windows, usage chart, per-model table, recent requests, alerts and
   their settings, weekly insights, keys. */
(function () {
  "use strict";
  var C = window.Console, t = C.t, el = C.el;

  function windowCard(w) {
    var level = w.percent >= 90 ? "bad" : w.percent >= 70 ? "warn" : "";
    var notes = [];
    notes.push(w.resets_at ? t("frees_at", { time: C.clock(w.resets_at) }) : t("nothing_used"));
    if (w.remaining <= 0) notes.push(t("runs_out_now"));
    else if (w.runs_out_at) notes.push(t("runs_out_at", { time: C.clock(w.runs_out_at) }));
    else if (w.pace_per_hour > 0) notes.push(t("lasts"));
    var bar = el("div", { class: "bar " + level, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                          "aria-valuenow": String(Math.min(100, w.percent)), "aria-label": w.label });
    var fillSpan = el("span", {});
    fillSpan.style.width = Math.min(100, w.percent) + "%";
    bar.appendChild(fillSpan);
    return el("article", { class: "window", "data-window": w.window, "data-used": String(w.used), "data-limit": String(w.limit) }, [
      el("div", { class: "label", text: w.label }),
      el("div", { class: "figure", text: C.unitValue(w.unit, w.used) + " / " + C.unitValue(w.unit, w.limit) }),
      bar,
    ].concat(notes.map(function (n) { return el("p", { class: "note", text: n }); })));
  }

  function loadMe() {
    return C.api("GET", "/v1/me").then(function (me) {
      document.getElementById("plan-name").textContent = me.plan.name;
      var cards = me.windows.map(windowCard);
      var box = document.getElementById("window-cards");
      box.textContent = "";
      if (!cards.length) box.appendChild(el("p", { class: "empty", text: t("no_windows") }));
      cards.forEach(function (c) { box.appendChild(c); });
    }).catch(C.failed("window-cards"));
  }

  function loadChart() {
    var range = document.getElementById("range").value, metric = document.getElementById("metric").value;
    return C.api("GET", "/v1/me/series?range=" + range + "&tz=" + encodeURIComponent(C.TZ)).then(function (data) {
      C.chart("chart", data, metric, "model");
    }).catch(C.failed("chart"));
  }

  function loadModels() {
    return C.api("GET", "/v1/me/models?days=90").then(function (res) {
      C.fill("model-table", C.table([
        { key: "model", label: t("model"), test: "model" },
        { key: "requests", label: t("requests"), num: true, fmt: C.num, test: "requests" },
        { key: "input_tokens", label: t("input"), num: true, fmt: C.num, test: "input" },
        { key: "cached_tokens", label: t("cached"), num: true, fmt: C.num, test: "cached" },
        { key: "cache_write_tokens", label: t("cache_writes"), num: true, fmt: C.num, test: "cache-writes" },
        { key: "output_tokens", label: t("output"), num: true, fmt: C.num, test: "output" },
        { key: "reasoning_tokens", label: t("reasoning"), num: true, fmt: C.num },
        { key: "cost", label: t("cost"), num: true, fmt: C.cost, test: "cost" },
        { key: "p50_latency_ms", label: t("p50_latency"), num: true, fmt: C.ms },
        { key: "p50_ttft_ms", label: t("p50_ttft"), num: true, fmt: C.ms },
        { key: "error_rate", label: t("error_rate"), num: true, fmt: C.pct },
      ], res.data));
    }).catch(C.failed("model-table"));
  }

  function loadRequests() {
    return C.api("GET", "/v1/me/requests?limit=200").then(function (res) {
      var empty = el("p", { class: "empty" }, [t("empty_requests") + " ", el("a", { href: "#snippet-claude-code", text: "Claude Code →" })]);
      var box = document.getElementById("request-table");
      box.textContent = "";
      if (!res.data.length) { box.appendChild(empty); document.getElementById("snippet-claude-code").open = true; return; }
      box.appendChild(C.table([
        { key: "ts", label: t("time"), fmt: C.when },
        { key: "model", label: t("model") },
        { key: "protocol", label: t("protocol") },
        { key: "input_tokens", label: t("input"), num: true, fmt: C.num },
        { key: "cached_tokens", label: t("cached"), num: true, fmt: C.num },
        { key: "cache_write_tokens", label: t("cache_writes"), num: true, fmt: C.num },
        { key: "output_tokens", label: t("output"), num: true, fmt: C.num },
        { key: "latency_ms", label: t("latency"), num: true, fmt: C.ms },
        { key: "status", label: t("status"), fmt: function (v) { return el("span", { class: "badge " + (v === "ok" ? "ok" : "bad"), text: v }); } },
        { key: "error_class", label: t("error_class") },
      ], res.data));
    }).catch(C.failed("request-table"));
  }

  function loadKeys() {
    return C.api("GET", "/v1/me/keys").then(function (res) {
      C.fill("key-table", C.table([
        { key: "name", label: t("key_name") },
        { key: "prefix", label: t("key_prefix"), fmt: function (v) { return v + "…"; } },
        { key: "created_at", label: t("created"), fmt: C.when },
        { key: "expires_at", label: t("expires"), fmt: function (v) { return v ? C.when(v) : t("never"); } },
        { key: "id", label: "", fmt: function (id, row) {
            if (row.revoked_at) return el("span", { class: "badge bad", text: t("revoked") });
            return el("button", { type: "button", class: "danger", "data-key": id, "aria-label": t("revoke") + " " + row.prefix,
              text: t("revoke"), onclick: function () { revoke(id); } });
        } },
      ], res.data));
    }).catch(C.failed("key-table"));
  }

  function revoke(id) {
    if (!window.confirm(t("revoke_confirm"))) return;
    C.api("DELETE", "/v1/me/keys/" + encodeURIComponent(id)).then(loadKeys).catch(C.failed("key-table"));
  }

  function usedOf(v, row) { return row.limit == null ? "–" : num(row.used) + " / " + num(row.limit); }
  var num = C.num;

  function loadAlerts() {
    return C.api("GET", "/v1/alerts").then(function (res) {
      var rows = res.events.slice().reverse();
      C.fill("alert-table", C.table([
        { key: "title", label: t("alert_what"), cls: "wrap", test: "alert", fmt: function (v, r) { return v || r.kind; } },
        { key: "window", label: t("alert_window"), test: "window" },
        { key: "used", label: t("alert_used"), num: true, fmt: usedOf, test: "used" },
        { key: "at", label: t("alert_when"), fmt: C.when },
      ], rows, t("empty_alerts")));
      var s = res.settings, form = document.getElementById("alert-form");
      form.elements.thresholds.value = s.thresholds ? s.thresholds.join(", ") : "";
      form.elements.forecast_minutes.value = s.forecast_minutes == null ? "" : s.forecast_minutes;
      form.elements.runaway_factor.value = s.runaway_factor == null ? "" : s.runaway_factor;
      form.elements.digest.checked = !!s.digest;
      C.fill("channel-table", C.table([
        { key: "kind", label: t("channel_kind"), test: "kind" },
        { key: "to", label: t("channel_target"), cls: "wrap", fmt: function (v, c) {
            return v ? [].concat(v).join(", ") : (c.url || "–"); } },
      ], s.channels, t("empty_channels")));
    }).catch(C.failed("alert-table"));
  }

  function loadInsights() {
    return C.api("GET", "/v1/insights").then(function (res) {
      C.fill("insights-body", C.digest(res, t("empty_insights")));
    }).catch(C.failed("insights-body"));
  }

  document.getElementById("alert-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target, status = document.getElementById("alert-form-status");
    var raw = form.elements.thresholds.value.trim();
    var body = {
      thresholds: raw ? raw.split(/[,\s]+/).filter(Boolean).map(Number) : null,
      forecast_minutes: form.elements.forecast_minutes.value === "" ? null : Number(form.elements.forecast_minutes.value),
      runaway_factor: form.elements.runaway_factor.value === "" ? null : Number(form.elements.runaway_factor.value),
      digest: form.elements.digest.checked,
    };
    status.className = "muted"; status.textContent = "";
    C.api("PUT", "/v1/alerts", body).then(function () {
      status.textContent = t("saved");
      return loadAlerts();
    }).catch(function (err) {
      if (err.message === "signed out") return;
      status.className = "error"; status.textContent = err.message;
    });
  });

  document.getElementById("key-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { name: document.getElementById("key-name").value || null };
    var days = document.getElementById("key-days").value;
    if (days) body.expires_in_days = Number(days);
    C.api("POST", "/v1/me/keys", body).then(function (res) {
      document.getElementById("new-key-value").textContent = res.key;
      document.getElementById("new-key").hidden = false;
      ev.target.reset();
      return loadKeys();
    }).catch(C.failed("key-table"));
  });
  document.getElementById("range").addEventListener("change", loadChart);
  document.getElementById("metric").addEventListener("change", loadChart);

  Promise.all([loadMe(), loadChart(), loadModels(), loadRequests(), loadKeys(), loadAlerts(), loadInsights()]).then(function () {
    document.body.setAttribute("data-loaded", "1");
  });
})();
