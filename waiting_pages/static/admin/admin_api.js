// What the operator console and the dashboard share: the admin API client and signing in with a key.
// The admin key lives in sessionStorage (this tab only) and goes out only as a Bearer header to this
// site's admin API.
window.IdpAdmin = (function () {
  "use strict";

  var KEY_NAME = "idp_admin_key";
  var base = "/admin/api";

  function $(id) { return document.getElementById(id); }

  function key() { return window.sessionStorage.getItem(KEY_NAME); }

  // A JSON call to the admin API; rejects with an Error carrying the HTTP status and the error code.
  function api(method, path, body) {
    var headers = { "Authorization": "Bearer " + key(), "Accept": "application/json" };
    var init = { method: method, headers: headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(base + path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var err = new Error(data.message || ("HTTP " + response.status));
          err.status = response.status;
          err.code = data.error;
          throw err;
        }
        return data;
      });
    });
  }

  // Wire the page's sign-in form (#sign-in-form, #api-key, #sign-in-error) and #sign-out button.
  // show(on) switches between the form and the page; signedIn() runs once a key is stored; stopped()
  // runs at sign-out (timers). Returns signOut(message), which forgets the key and shows the form.
  function session(show, signedIn, stopped) {
    function signOut(message) {
      window.sessionStorage.removeItem(KEY_NAME);
      stopped();
      show(false);
      $("sign-in-error").textContent = message || "";
    }
    $("sign-in-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = $("api-key").value.trim();
      if (!value) { return; }
      window.sessionStorage.setItem(KEY_NAME, value);
      $("api-key").value = "";
      $("sign-in-error").textContent = "";
      signedIn();
    });
    $("sign-out").addEventListener("click", function () { signOut(""); });
    return signOut;
  }

  return { $: $, key: key, api: api, session: session };
}());
