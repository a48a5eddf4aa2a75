/* The operator's page: users, team totals, top users and models, errors, providers, alert
   deliveries and the team digest, ledger. */
(function () {
  "use strict";
  var C = window.Console, t = C.t, el = C.el;
  var plans = [];

  function windowBadges(windows) {
    var box = el("span", {});
    windows.forEach(function (w) {
      var level = w.percent >= 90 ? "bad" : w.percent >= 70 ? "warn" : "ok";
      box.appendChild(el("span", { class: "badge " + level, title: w.label, "data-window": w.window, text: w.window + " " + C.pct(w.percent / 100) }));
      box.appendChild(document.createTextNode(" "));
    });
    return box;
  }

  function planSelect(user) {
    var select = el("select", { "aria-label": t("change_plan") + " " + user.name, "data-user": user.name, class: "plan-select" },
      plans.map(function (p) { var o = el("option", { value: p.name, text: p.name }); if (p.name === user.plan) o.selected = true; return o; }));
    select.addEventListener("change", function () {
      C.api("PATCH", "/admin/users/" + encodeURIComponent(user.name), { plan: select.value }).then(loadUsers).catch(C.failed("user-table"));
    });
    return select;
  }

  function loadUsers() {
    return C.api("GET", "/admin/overview").then(function (res) {
      plans = res.plans;
      C.fill("user-table", C.table([
        { key: "name", label: t("user"), test: "user" },
        { key: "plan", label: t("plan"), fmt: function (_, u) { return planSelect(u); } },
        { key: "windows", label: t("windows"), fmt: windowBadges },
        { key: "last_request_at", label: t("last_request"), fmt: C.when },
        { key: "disabled", label: t("status"), fmt: function (v) { return el("span", { class: "badge " + (v ? "bad" : "ok"), text: v ? t("disabled") : t("enabled") }); } },
        { key: "name", label: "", fmt: function (name, u) {
            return el("span", {}, [
              el("button", { type: "button", class: "ghost", text: u.disabled ? t("enable") : t("disable"), "data-toggle": name,
                onclick: function () { C.api("PATCH", "/admin/users/" + encodeURIComponent(name), { disabled: !u.disabled }).then(loadUsers).catch(C.failed("user-table")); } }),
              " ",
              el("button", { type: "button", class: "ghost", text: t("show_keys"), onclick: function () { showKeys(name); } }),
            ]);
        } },
      ], res.users));
    }).catch(C.failed("user-table"));
  }

  function showKeys(name) {
    var box = document.getElementById("user-keys");
    box.hidden = false;
    C.api("GET", "/admin/keys?user=" + encodeURIComponent(name)).then(function (res) {
      box.textContent = "";
      box.appendChild(el("h3", { text: t("show_keys") + " · " + name }));
      box.appendChild(C.table([
        { key: "prefix", label: t("key_prefix"), fmt: function (v) { return v + "…"; } },
        { key: "created_at", label: t("created"), fmt: C.when },
        { key: "expires_at", label: t("expires"), fmt: function (v) { return v ? C.when(v) : t("never"); } },
        { key: "id", label: "", fmt: function (id, row) {
            if (row.revoked_at) return el("span", { class: "badge bad", text: t("revoked") });
            return el("button", { type: "button", class: "danger", text: t("revoke"), onclick: function () {
              if (!window.confirm(t("revoke_confirm"))) return;
              C.api("DELETE", "/admin/keys/" + encodeURIComponent(id)).then(function () { showKeys(name); }).catch(C.failed("user-keys"));
            } });
        } },
      ], res.data));
    }).catch(C.failed("user-keys"));
  }

  document.getElementById("user-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { name: document.getElementById("new-user-name").value, plan: document.getElementById("new-user-plan").value };
    C.api("POST", "/admin/users", body).then(function (res) {
      document.getElementById("new-user-key-value").textContent = res.key;
      document.getElementById("new-user-key").hidden = false;
      ev.target.reset();
      return loadUsers();
    }).catch(C.failed("user-table"));
  });

  function loadTeam() {
    var range = document.getElementById("range").value, by = document.getElementById("by").value, metric = document.getElementById("metric").value;
    return C.api("GET", "/admin/series?range=" + range + "&by=" + by + "&tz=" + encodeURIComponent(C.TZ)).then(function (data) {
      C.chart("chart", data, metric, by);
    }).catch(C.failed("chart"));
  }

  function breakdownTable(by, id) {
    return C.api("GET", "/admin/breakdown?by=" + by + "&days=30").then(function (res) {
      C.fill(id, C.table([
        { key: by, label: t(by) },
        { key: "requests", label: t("requests"), num: true, fmt: C.num },
        { key: "input_tokens", label: t("input"), num: true, fmt: C.num },
        { key: "cached_tokens", label: t("cached"), num: true, fmt: C.num },
        { key: "cache_write_tokens", label: t("cache_writes"), num: true, fmt: C.num },
        { key: "output_tokens", label: t("output"), num: true, fmt: C.num },
        { key: "cost", label: t("cost"), num: true, fmt: C.cost },
        { key: "error_rate", label: t("error_rate"), num: true, fmt: C.pct },
      ], res.data.slice(0, 10)));
    }).catch(C.failed(id));
  }

  function loadErrors() {
    return C.api("GET", "/admin/errors?days=7").then(function (res) {
      C.fill("error-table", C.table([
        { key: "error_class", label: t("error_class") },
        { key: "provider", label: t("provider") },
        { key: "status", label: t("status") },
        { key: "requests", label: t("requests"), num: true, fmt: C.num },
      ], res.data));
    }).catch(C.failed("error-table"));
  }

  function loadProviders() {
    return C.api("GET", "/admin/health").then(function (res) {
      var rows = res.deployments.length ? res.deployments : res.configured.map(function (d) { return { provider: d.provider, upstream: d.upstream, state: "closed", healthy: true, in_flight: 0 }; });
      C.fill("provider-table", C.table([
        { key: "provider", label: t("provider") },
        { key: "upstream", label: t("upstream") },
        { key: "state", label: t("circuit"), fmt: function (v, r) { return el("span", { class: "badge " + (r.healthy ? "ok" : "bad"), text: v + " · " + (r.healthy ? t("healthy") : t("unhealthy")) }); } },
        { key: "last_hour_error_rate", label: t("error_rate"), num: true, fmt: function (v) { return v == null ? "–" : C.pct(v); } },
        { key: "last_hour_p50_latency_ms", label: t("p50_latency"), num: true, fmt: C.ms },
        { key: "in_flight", label: t("in_flight"), num: true, fmt: C.num },
      ], rows));
    }).catch(C.failed("provider-table"));
  }

  function loadDeliveries() {
    return C.api("GET", "/admin/alerts").then(function (res) {
      var counts = document.getElementById("delivery-counts");
      counts.textContent = "";
      [["pending", "warn"], ["sent", "ok"], ["failed", "bad"]].forEach(function (p) {
        counts.appendChild(el("span", { class: "badge " + (res.counts[p[0]] ? p[1] : ""), "data-state": p[0], "data-count": String(res.counts[p[0]]),
          text: t(p[0]) + " " + C.num(res.counts[p[0]]) }));
      });
      C.fill("delivery-table", C.table([
        { key: "state", label: t("delivery_state"), test: "state", fmt: function (v) {
            return el("span", { class: "badge " + (v === "failed" ? "bad" : "warn"), text: t(v) }); } },
        { key: "channel", label: t("delivery_channel"), test: "channel" },
        { key: "attempts", label: t("attempts"), num: true, fmt: C.num, test: "attempts" },
        { key: "last_error", label: t("last_error"), cls: "wrap", test: "error" },
        { key: "kind", label: t("event") },
        { key: "created_at", label: t("time"), fmt: C.when },
        { key: "next_at", label: t("next_attempt"), fmt: function (v, r) { return r.state === "failed" ? "–" : C.when(v); } },
      ], res.open, t(res.counts.sent ? "empty_deliveries" : "no_deliveries")));
    }).catch(C.failed("delivery-table"));
  }

  function loadTeamInsights() {
    return C.api("GET", "/v1/insights").then(function (res) {
      C.fill("insights-body", C.digest(res, t("empty_team_insights")));
    }).catch(C.failed("insights-body"));
  }

  var next = null;
  function ledgerParams() {
    var form = document.getElementById("ledger-form"), params = new URLSearchParams();
    ["user", "model", "provider", "status", "protocol"].forEach(function (k) { if (form.elements[k].value) params.set(k, form.elements[k].value); });
    ["since", "until"].forEach(function (k) { if (form.elements[k].value) params.set(k, String(new Date(form.elements[k].value).getTime() / 1000)); });
    return params;
  }
  function loadLedger(more) {
    var params = ledgerParams();
    document.getElementById("ledger-csv").href = "/admin/ledger.csv?" + params.toString();
    if (more && next) params.set("after", next);
    params.set("limit", "50");
    return C.api("GET", "/admin/ledger?" + params.toString()).then(function (res) {
      next = res.next;
      document.getElementById("ledger-next").hidden = !next;
      C.fill("ledger-table", C.table([
        { key: "ts", label: t("time"), fmt: C.when },
        { key: "user", label: t("user") },
        { key: "model", label: t("model") },
        { key: "provider", label: t("provider") },
        { key: "protocol", label: t("protocol") },
        { key: "status", label: t("status"), fmt: function (v) { return el("span", { class: "badge " + (v === "ok" ? "ok" : "bad"), text: v }); } },
        { key: "error_class", label: t("error_class") },
        { key: "input_tokens", label: t("input"), num: true, fmt: C.num },
        { key: "cached_tokens", label: t("cached"), num: true, fmt: C.num },
        { key: "cache_write_tokens", label: t("cache_writes"), num: true, fmt: C.num },
        { key: "output_tokens", label: t("output"), num: true, fmt: C.num },
        { key: "latency_ms", label: t("latency"), num: true, fmt: C.ms },
      ], res.data));
    }).catch(C.failed("ledger-table"));
  }
  document.getElementById("ledger-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadLedger(false); });
  document.getElementById("ledger-next").addEventListener("click", function () { loadLedger(true); });
  ["range", "by", "metric"].forEach(function (id) { document.getElementById(id).addEventListener("change", loadTeam); });

  Promise.all([loadUsers(), loadTeam(), breakdownTable("user", "top-users"), breakdownTable("model", "top-models"),
               loadErrors(), loadProviders(), loadLedger(false), loadDeliveries(), loadTeamInsights()]).then(function () { document.body.setAttribute("data-loaded", "1"); });
})();
