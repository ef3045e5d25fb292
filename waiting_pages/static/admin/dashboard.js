// Operator dashboard: live counters and per-minute charts of one event, drawn as inline SVG.
// Signing in and the admin API client are admin_api.js's.
(function () {
  "use strict";

  var admin = window.IdpAdmin;
  var $ = admin.$, key = admin.key, api = admin.api;
  var REFRESH_MS = 5000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var eventId = document.body.getAttribute("data-event-id");
  var timer = null;
  var paused = false;

  function showBoard(on) {
    $("sign-in").hidden = on;
    $("board").hidden = !on;
    $("sign-out").hidden = !on;
  }

  function fmt(n) { return Number(n).toLocaleString("en"); }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function clockLabel(epoch) {
    var d = new Date(epoch * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  // points: [{t: epoch seconds, v: number}], kind: "line" | "bars"
  function draw(svg, points, kind) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var W = 600, H = 200, L = 48, R = 10, T = 10, B = 24;
    svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" }));
    svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: H - B, "class": "axis" }));
    if (!points.length) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, "No samples yet"));
      svg.setAttribute("data-points", "0");
      return;
    }
    var t0 = points[0].t, t1 = points[points.length - 1].t;
    var span = Math.max(60, t1 - t0);
    var max = Math.max(1, Math.max.apply(null, points.map(function (p) { return p.v; })));
    function x(t) { return L + (W - L - R) * (t - t0) / span; }
    function y(v) { return H - B - (H - B - T) * v / max; }
    [0, 0.5, 1].forEach(function (f) {
      var v = Math.round(max * f);
      svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "class": "tick" }, fmt(v)));
      if (f > 0) { svg.appendChild(el("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), "class": "axis" })); }
    });
    svg.appendChild(el("text", { x: L, y: H - 6, "class": "tick" }, clockLabel(t0)));
    svg.appendChild(el("text", { x: W - R, y: H - 6, "text-anchor": "end", "class": "tick" }, clockLabel(t1)));
    if (kind === "bars") {
      var bw = Math.max(2, (W - L - R) / Math.max(points.length, 1) - 2);
      points.forEach(function (p) {
        var top = y(p.v);
        svg.appendChild(el("rect", { x: Math.min(x(p.t), W - R - bw), y: top, width: bw, height: Math.max(0, H - B - top), "class": "bar" }));
      });
    } else {
      var d = points.map(function (p, i) { return (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1); }).join(" ");
      var area = d + " L" + x(t1).toFixed(1) + " " + (H - B) + " L" + x(t0).toFixed(1) + " " + (H - B) + " Z";
      svg.appendChild(el("path", { d: area, "class": "area" }));
      svg.appendChild(el("path", { d: d, "class": "line" }));
    }
    svg.setAttribute("data-points", String(points.length));
  }

  function render(data) {
    var c = data.counters;
    ["waiting", "serving", "queue", "active", "completed", "abandoned", "expired"].forEach(function (name) {
      $("c-" + name).textContent = fmt(c[name]);
    });
    var periodic = data.inlet.periodic;
    paused = periodic.paused;
    $("inlet-state").textContent = !periodic.enabled ? "off" : (paused ? "paused" : "running (+" + fmt(periodic.increment_by) + "/min)");
    var toggle = $("toggle-pause");
    toggle.textContent = paused ? "Resume periodic inlet" : "Pause periodic inlet";
    toggle.className = paused ? "paused" : "";
    renderTargets(data.targets);
    var s = data.samples;
    draw($("chart-waiting"), s.map(function (p) { return { t: p.minute, v: p.waiting }; }), "line");
    var admissions = [];
    for (var i = 1; i < s.length; i++) {
      admissions.push({ t: s[i].minute, v: Math.max(0, (s[i].serving - s[i - 1].serving) * 60 / Math.max(60, s[i].minute - s[i - 1].minute)) });
    }
    draw($("chart-admissions"), admissions, "bars");
    draw($("chart-active"), s.map(function (p) { return { t: p.minute, v: p.active }; }), "line");
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString("en-GB") + " · " + s.length + " per-minute samples";
  }

  function html(name, attrs, text) {
    var node = document.createElement(name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function renderRefused(report) {
    var body = $("refused-rows");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var rows = report.top_addresses || [];
    if (!rows.length) {
      var none = html("tr");
      var cell = html("td", { colspan: 3 }, "None");
      none.appendChild(cell);
      body.appendChild(none);
    }
    rows.forEach(function (row) {
      var tr = html("tr");
      tr.appendChild(html("td", {}, row.address));
      tr.appendChild(html("td", {}, fmt(row.refused)));
      tr.appendChild(html("td", {}, clockLabel(row.last_at)));
      body.appendChild(tr);
    });
    var gate = report.challenge ? report.challenge.kind.replace("_", " ") : "no join gate";
    $("refused-summary").textContent = "Rate limits " + (report.rate_limits_enabled ? "on" : "off") + " · " + gate +
      " · refused joins get " + (report.on_refusal === "infinite_queue" ? "the infinite queue" : "an error");
  }

  function orNone(n) { return n === null || n === undefined ? "none" : fmt(n); }

  function renderTargets(t) {
    if (!t) { return; }
    $("t-active").textContent = fmt(t.active_sessions);
    $("t-max-active").textContent = orNone(t.max_active);
    $("t-rate").textContent = t.admissions_per_minute === null ? "–" : fmt(t.admissions_per_minute);
    $("t-max-rate").textContent = orNone(t.max_per_minute);
    // The form shows what is stored, unless the operator is editing it.
    var form = $("targets-form");
    if (!form.contains(document.activeElement)) {
      $("t-mode").value = t.mode;
      $("t-max-active-input").value = t.max_active === null ? "" : String(t.max_active);
      $("t-max-rate-input").value = t.max_per_minute === null ? "" : String(t.max_per_minute);
    }
  }

  function wholeOrNull(id) {
    var raw = $(id).value.trim();
    if (raw === "") { return null; }
    var n = Number(raw);
    return Number.isInteger(n) && n >= 0 ? n : NaN;
  }

  function refresh() {
    return api("GET", "/events/" + encodeURIComponent(eventId) + "/dashboard?minutes=240").then(function (data) {
      showBoard(true);
      render(data);
      return api("GET", "/events/" + encodeURIComponent(eventId) + "/abuse?limit=10").then(renderRefused);
    }).catch(function (err) {
      if (err.status === 401 || err.status === 403) {
        signOut(err.status === 403 ? "This key may not read events." : "The key was not accepted.");
      } else {
        $("action-status").textContent = "Could not refresh: " + err.message;
      }
    });
  }

  function start() {
    if (timer) { window.clearInterval(timer); }
    timer = window.setInterval(refresh, REFRESH_MS);
    return refresh();
  }

  var signOut = admin.session(showBoard, start, function () {
    if (timer) { window.clearInterval(timer); timer = null; }
  });

  $("advance-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var by = parseInt($("advance-by").value, 10);
    if (!(by >= 1)) { $("action-status").textContent = "Enter a positive whole number."; return; }
    api("POST", "/increment_serving_counter", { event_id: eventId, increment_by: by }).then(function (data) {
      $("action-status").textContent = "Serving counter is now " + fmt(data.serving_num) + ".";
      return refresh();
    }).catch(function (err) { $("action-status").textContent = "Not advanced: " + err.message; });
  });

  $("toggle-pause").addEventListener("click", function () {
    var action = paused ? "resume" : "pause";
    api("POST", "/events/" + encodeURIComponent(eventId) + "/inlet/" + action).then(function () {
      $("action-status").textContent = action === "pause" ? "Periodic inlet paused." : "Periodic inlet resumed.";
      return refresh();
    }).catch(function (err) { $("action-status").textContent = "Not changed: " + err.message; });
  });

  $("targets-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var body = { mode: $("t-mode").value, max_active: wholeOrNull("t-max-active-input"),
                 max_per_minute: wholeOrNull("t-max-rate-input") };
    if (Number.isNaN(body.max_active) || Number.isNaN(body.max_per_minute)) {
      $("action-status").textContent = "Targets must be whole numbers, or empty for none.";
      return;
    }
    api("PATCH", "/events/" + encodeURIComponent(eventId), body).then(function () {
      $("action-status").textContent = "Targets saved; the worker holds them from its next tick.";
      if (document.activeElement) { document.activeElement.blur(); }
      return refresh();
    }).catch(function (err) { $("action-status").textContent = "Targets not saved: " + err.message; });
  });

  if (key()) { start(); } else { showBoard(false); }
})();
