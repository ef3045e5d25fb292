// Operator console: events with live figures, event and inlet settings, relying parties, signing keys
// and the audit log, all through the admin API. The admin key lives in sessionStorage (this tab only)
// and goes out only as a Bearer header to this site's admin API. Every value from the API is put on the
// page as text (textContent, input values), never as markup.
(function () {
  "use strict";

  var admin = window.IdpAdmin;
  var $ = admin.$, key = admin.key, api = admin.api;
  var REFRESH_MS = 5000;
  var timer = null;
  var auditCursor = null;
  // Fields the server keeps for itself: shown, never sent back.
  var READ_ONLY = { event_id: true, created_at: true, updated_at: true };
  var signOut = null;

  function node(tag, attrs, text) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (text !== undefined && text !== null) { el.textContent = String(text); }
    return el;
  }

  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }

  function fmt(n) { return n === undefined || n === null ? "–" : Number(n).toLocaleString("en"); }

  function when(epoch) {
    if (!epoch) { return "–"; }
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function say(text, bad) {
    var status = $("status");
    status.textContent = text;
    status.className = bad ? "status bad" : "status";
  }

  function failed(err) {
    if (err && err.status === 401) { signOut("The key is no longer accepted."); return; }
    say(err && err.status === 403 ? "This key's scopes do not allow that." : (err.message || String(err)), true);
  }

  function lines(text) {
    return text.split("\n").map(function (s) { return s.trim(); }).filter(function (s) { return s.length; });
  }

  // --- signing in ------------------------------------------------------------------------------

  function showConsole(on) {
    $("sign-in").hidden = on;
    $("console").hidden = !on;
    $("nav").hidden = !on;
  }

  function stopTimer() {
    if (timer) { window.clearTimeout(timer); timer = null; }
  }

  // A key is tried on the events list before the console opens.
  function signedIn() {
    api("GET", "/events?limit=1").then(function () {
      showConsole(true);
      route();
    }).catch(function (err) {
      signOut(err.status === 401 ? "The key was not accepted." : (err.status === 403 ? "This key cannot read events." : err.message));
    });
  }

  // --- views -----------------------------------------------------------------------------------

  function route() {
    if (!key()) { return; }
    if (timer) { window.clearTimeout(timer); timer = null; }
    var hash = window.location.hash.replace(/^#\/?/, "") || "events";
    var parts = hash.split("/").map(decodeURIComponent);
    var view = parts[0];
    if (view === "events" && parts[1] === "new") { view = "new-event"; }
    else if (view === "events" && parts[1]) { view = "event"; }
    ["events", "new-event", "event", "clients", "keys", "audit"].forEach(function (name) {
      $("view-" + name).hidden = name !== view;
    });
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a.getAttribute("data-view") === (view === "event" || view === "new-event" ? "events" : view)) {
        a.setAttribute("aria-current", "page");
      } else {
        a.removeAttribute("aria-current");
      }
    });
    say("");
    if (view === "events") { loadEvents(); }
    else if (view === "event") { loadEvent(parts[1]); }
    else if (view === "clients") { loadClients(); }
    else if (view === "keys") { loadKeys(); }
    else if (view === "audit") { loadAudit(true); }
    else if (view === "new-event") { $("new-event-id").focus(); }
  }

  // Events with their live figures, refreshed while the list is shown.
  function loadEvents() {
    api("GET", "/events?limit=100").then(function (data) {
      return Promise.all(data.events.map(function (event) {
        return api("GET", "/events/" + encodeURIComponent(event.event_id) + "/stats")
          .catch(function () { return {}; })
          .then(function (stats) { return { event: event, stats: stats }; });
      }));
    }).then(function (rows) {
      var body = $("events-table").querySelector("tbody");
      clear(body);
      if (!rows.length) {
        var empty = node("tr");
        empty.appendChild(node("td", { colspan: 7 }, "No events yet."));
        body.appendChild(empty);
      }
      rows.forEach(function (row) {
        var id = row.event.event_id;
        var tr = node("tr", { "data-event-id": id });
        tr.appendChild(node("td")).appendChild(node("code", {}, id));
        tr.appendChild(node("td", {}, row.event.name));
        tr.appendChild(node("td", { "class": "num", "data-field": "waiting" }, fmt(row.stats.waiting)));
        tr.appendChild(node("td", { "class": "num", "data-field": "serving" }, fmt(row.stats.serving)));
        tr.appendChild(node("td", { "class": "num", "data-field": "queue" }, fmt(row.stats.queue)));
        tr.appendChild(node("td", { "class": "num", "data-field": "active" }, fmt(row.stats.active_tokens)));
        var actions = node("td");
        actions.appendChild(node("a", { href: "#/events/" + encodeURIComponent(id) }, "Edit"));
        actions.appendChild(node("a", { href: "/admin/dashboard/" + encodeURIComponent(id) }, "Dashboard"));
        tr.appendChild(actions);
        body.appendChild(tr);
      });
      $("events-updated").textContent = "Updated " + new Date().toLocaleTimeString("en") + "; refreshed every 5 s.";
      timer = window.setTimeout(loadEvents, REFRESH_MS);
    }).catch(failed);
  }

  // One input per field, chosen from the value's JSON type, so fields the server adds appear as they come.
  function fieldInput(form, prefix, name, value) {
    var id = form.id + "-" + (prefix ? prefix + "-" : "") + name;
    var label = node("label", { "for": id }, (prefix ? prefix + "." : "") + name);
    var input;
    var kind;
    if (typeof value === "boolean") {
      kind = "bool";
      input = node("input", { type: "checkbox", id: id });
      input.checked = value;
    } else if (typeof value === "number") {
      kind = "number";
      input = node("input", { type: "number", id: id, step: "any" });
      input.value = String(value);
    } else if (typeof value === "string") {
      kind = "string";
      input = node("input", { type: "text", id: id, spellcheck: "false" });
      input.value = value;
    } else {
      kind = "json";  // objects, lists and unset (null) values are edited as JSON
      input = node("textarea", { id: id, rows: value && typeof value === "object" ? 4 : 1, spellcheck: "false" });
      input.value = JSON.stringify(value, null, value && typeof value === "object" && Object.keys(value).length ? 2 : 0);
    }
    input.setAttribute("data-field", name);
    input.setAttribute("data-kind", kind);
    if (prefix) { input.setAttribute("data-group", prefix); }
    input.setAttribute("data-original", JSON.stringify(value));
    return [label, input];
  }

  function readInput(input) {
    var kind = input.getAttribute("data-kind");
    if (kind === "bool") { return input.checked; }
    if (kind === "number") {
      if (input.value.trim() === "") { return null; }
      return Number(input.value);
    }
    if (kind === "string") { return input.value; }
    var text = input.value.trim();
    if (text === "") { return null; }
    try { return JSON.parse(text); } catch (e) {
      var err = new Error(input.getAttribute("data-field") + " is not valid JSON.");
      input.focus();
      throw err;
    }
  }

  // The fields whose value changed, grouped as the API takes them ({"periodic": {"paused": true}}).
  function changes(form) {
    var out = {};
    Array.prototype.forEach.call(form.querySelectorAll("[data-field]"), function (input) {
      var value = readInput(input);
      if (JSON.stringify(value) === input.getAttribute("data-original")) { return; }
      var group = input.getAttribute("data-group");
      if (group) {
        out[group] = out[group] || {};
        out[group][input.getAttribute("data-field")] = value;
      } else {
        out[input.getAttribute("data-field")] = value;
      }
    });
    return out;
  }

  function fill(form, data) {
    var box = form.querySelector(".generated");
    clear(box);
    Object.keys(data).forEach(function (name) {
      if (READ_ONLY[name]) { return; }
      var value = data[name];
      if (form.getAttribute("data-kind") === "inlet" && value && typeof value === "object" && !Array.isArray(value)) {
        Object.keys(value).forEach(function (sub) {
          fieldInput(form, name, sub, value[sub]).forEach(function (el) { box.appendChild(el); });
        });
        return;
      }
      fieldInput(form, "", name, value).forEach(function (el) { box.appendChild(el); });
    });
  }

  var currentEvent = null;

  function loadEvent(eventId) {
    currentEvent = eventId;
    $("event-title").textContent = eventId;
    $("event-dashboard").setAttribute("href", "/admin/dashboard/" + encodeURIComponent(eventId));
    var path = "/events/" + encodeURIComponent(eventId);
    Promise.all([api("GET", path), api("GET", path + "/inlet")]).then(function (both) {
      var inlet = both[1];
      delete inlet.event_id;
      fill($("event-form"), both[0]);
      fill($("inlet-form"), inlet);
    }).catch(failed);
  }

  function save(form, method, path, label) {
    var body;
    try { body = changes(form); } catch (err) { say(err.message, true); return; }
    if (!Object.keys(body).length) { say("Nothing changed."); return; }
    api(method, path, body).then(function (data) {
      if (form.id === "inlet-form") { delete data.event_id; }
      fill(form, data);
      say(label + " saved: " + Object.keys(body).join(", ") + ".");
    }).catch(failed);
  }

  // Relying parties: the list, registration and secret rotation (a secret is shown once).
  function showSecret(client) {
    $("secret-client-id").textContent = client.client_id;
    $("secret-value").textContent = client.client_secret;
    $("secret-once").hidden = false;
    $("secret-done").focus();
  }

  function loadClients() {
    Promise.all([api("GET", "/clients?limit=1000"), api("GET", "/events?limit=1000")]).then(function (both) {
      var body = $("clients-table").querySelector("tbody");
      clear(body);
      both[0].clients.forEach(function (client) {
        var tr = node("tr", { "data-client-id": client.client_id });
        tr.appendChild(node("td")).appendChild(node("code", {}, client.client_id));
        tr.appendChild(node("td", {}, client.name));
        tr.appendChild(node("td", {}, client.event_id));
        tr.appendChild(node("td", {}, client.redirect_uris.join("\n")));
        var actions = node("td");
        var rotate = node("button", { type: "button", "class": "link rotate-secret" }, "Rotate secret");
        rotate.addEventListener("click", function () {
          if (!window.confirm("Rotate the secret of " + client.client_id + "? The old secret stops working at once.")) { return; }
          api("POST", "/clients/" + encodeURIComponent(client.client_id) + "/rotate_secret").then(function (data) {
            showSecret(data);
            say("New secret for " + data.client_id + ".");
          }).catch(failed);
        });
        actions.appendChild(rotate);
        tr.appendChild(actions);
        body.appendChild(tr);
      });
      var select = $("client-event");
      var chosen = select.value;
      clear(select);
      both[1].events.forEach(function (event) {
        select.appendChild(node("option", { value: event.event_id }, event.event_id + " · " + event.name));
      });
      if (chosen) { select.value = chosen; }
    }).catch(failed);
  }

  function registerClient(ev) {
    ev.preventDefault();
    var body = {
      event_id: $("client-event").value,
      redirect_uris: lines($("client-redirects").value)
    };
    if ($("client-name").value.trim()) { body.name = $("client-name").value.trim(); }
    if ($("client-login").value.trim()) { body.initiate_login_uri = $("client-login").value.trim(); }
    var logout = lines($("client-logout").value);
    if (logout.length) { body.post_logout_redirect_uris = logout; }
    api("POST", "/clients", body).then(function (data) {
      $("client-form").reset();
      showSecret(data);
      say("Registered " + data.client_id + ".");
      loadClients();
    }).catch(failed);
  }

  // Signing keys.
  function loadKeys() {
    api("GET", "/keys").then(function (data) {
      var body = $("keys-table").querySelector("tbody");
      clear(body);
      data.keys.forEach(function (k) {
        var tr = node("tr", { "data-kid": k.kid });
        tr.appendChild(node("td")).appendChild(node("code", {}, k.kid));
        tr.appendChild(node("td", {}, k.alg));
        tr.appendChild(node("td", { "data-field": "status" }, k.status));
        tr.appendChild(node("td", {}, when(k.created_at)));
        tr.appendChild(node("td", { "data-field": "active_from" }, when(k.active_from)));
        body.appendChild(tr);
      });
    }).catch(failed);
  }

  function rotateKey(ev) {
    ev.preventDefault();
    var alg = $("rotate-alg").value;
    // The rotation's only field is optional: no choice, no body.
    api("POST", "/keys/rotate", alg ? { alg: alg } : undefined).then(function (data) {
      // A new key is published at once and signs from active_from, once every cache has it.
      say("New key " + data.kid + " (" + data.alg + ") published; it signs from " + when(data.active_from) + ".");
      loadKeys();
    }).catch(failed);
  }

  // The audit log, newest first, a page at a time.
  function loadAudit(fresh) {
    if (fresh) { auditCursor = null; clear($("audit-table").querySelector("tbody")); }
    var path = "/audit?limit=50" + (auditCursor ? "&cursor=" + encodeURIComponent(auditCursor) : "");
    api("GET", path).then(function (data) {
      var body = $("audit-table").querySelector("tbody");
      data.entries.forEach(function (entry) {
        var tr = node("tr", { "data-action": entry.action });
        tr.appendChild(node("td", {}, when(entry.at)));
        tr.appendChild(node("td")).appendChild(node("code", {}, entry.key_id || "–"));
        tr.appendChild(node("td", {}, entry.action));
        tr.appendChild(node("td", {}, entry.target));
        tr.appendChild(node("td", { "class": "detail" }, JSON.stringify(entry.detail)));
        body.appendChild(tr);
      });
      auditCursor = data.next_cursor;
      $("audit-more").hidden = !auditCursor;
    }).catch(failed);
  }

  // --- wiring ----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    signOut = admin.session(showConsole, signedIn, stopTimer);
    $("new-event-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/events", { event_id: $("new-event-id").value.trim(), name: $("new-event-name").value.trim() })
        .then(function (event) {
          $("new-event-form").reset();
          window.location.hash = "#/events/" + encodeURIComponent(event.event_id);
          say("Created " + event.event_id + ".");
        }).catch(failed);
    });
    $("event-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      save($("event-form"), "PATCH", "/events/" + encodeURIComponent(currentEvent), "Event");
    });
    $("inlet-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      save($("inlet-form"), "PUT", "/events/" + encodeURIComponent(currentEvent) + "/inlet", "Targets");
    });
    $("client-form").addEventListener("submit", registerClient);
    $("secret-done").addEventListener("click", function () {
      $("secret-value").textContent = "";
      $("secret-client-id").textContent = "";
      $("secret-once").hidden = true;
    });
    $("rotate-form").addEventListener("submit", rotateKey);
    $("audit-more").addEventListener("click", function () { loadAudit(false); });
    window.addEventListener("hashchange", route);
    if (key()) {
      api("GET", "/events?limit=1").then(function () { showConsole(true); route(); })
        .catch(function () { signOut(""); });
    }
  });
}());
