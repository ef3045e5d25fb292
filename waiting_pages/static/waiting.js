/* The waiting page's poller. The server decides when to ask again (poll_after_ms); this script only
 * follows it: it pauses while the tab is hidden, backs off on errors and 503s (honouring Retry-After),
 * and moves on by itself when the visitor is admitted. Without JavaScript the page's <noscript> meta
 * refresh does the same job at the same server-chosen interval. */
(function () {
  'use strict';
  var root = document.getElementById('wr-status');
  if (!root || !window.fetch) { return; }
  var statusUrl = root.getAttribute('data-status-url');
  var lang = document.documentElement.lang || 'en';
  var numbers = (window.Intl && Intl.NumberFormat) ? new Intl.NumberFormat(lang) : null;
  var MAX_BACKOFF_MS = 120000;
  var FIRST_BACKOFF_MS = 2000;
  var timer = null;
  var dueAt = 0;
  var failures = 0;
  var inFlight = false;
  var done = false;

  function text(name) { return root.getAttribute('data-t-' + name) || ''; }
  function fmt(n) { return n === null || n === undefined ? '' : (numbers ? numbers.format(n) : String(n)); }
  function setText(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== value) { el.textContent = value; }
  }
  function notice(message) {
    var el = document.getElementById('wr-notice');
    if (!el) { return; }
    if (message) { el.textContent = message; el.hidden = false; } else { el.hidden = true; el.textContent = ''; }
  }

  /* The same phrases as the server's, with its translated templates. */
  function estimateText(est) {
    if (!est) { return text('none'); }
    var low, high, kind;
    if (est.high_seconds < 60) { return text('under-minute'); }
    if (est.high_seconds <= 90 * 60) {
      low = Math.floor(est.low_seconds / 60); high = Math.ceil(est.high_seconds / 60);
      kind = low === 0 ? 'minutes-up-to' : 'minutes-range';
    } else {
      low = Math.floor(est.low_seconds / 3600); high = Math.ceil(est.high_seconds / 3600);
      kind = low === 0 ? 'hours-up-to' : 'hours-range';
    }
    return text(kind).replace('{low}', fmt(low)).replace('{high}', fmt(high));
  }

  function render(s) {
    setText('wr-position', fmt(s.position));
    setText('wr-ahead', fmt(s.ahead));
    setText('wr-estimate', estimateText(s.estimate));
    if (typeof s.waiting === 'number') {
      setText('wr-waiting', text(s.waiting === 1 ? 'waiting-one' : 'waiting-other').replace('{count}', fmt(s.waiting)));
    }
    var bar = document.getElementById('wr-progress');
    if (bar && typeof s.progress === 'number') { bar.value = s.progress; bar.textContent = s.progress + '%'; }
    var updated = document.getElementById('wr-updated');
    if (updated && s.updated_at) {
      var when = new Date(s.updated_at * 1000);
      updated.setAttribute('datetime', when.toISOString());
      updated.textContent = when.toLocaleTimeString(lang);
    }
  }

  function schedule(ms) {
    window.clearTimeout(timer);
    dueAt = Date.now() + ms;
    if (!document.hidden && !done) { timer = window.setTimeout(poll, ms); }
  }

  function backoff(retryAfterSeconds) {
    failures += 1;
    var ms = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * Math.pow(2, failures - 1));
    ms = ms * (0.8 + Math.random() * 0.4);
    if (retryAfterSeconds > 0) { ms = Math.max(ms, retryAfterSeconds * 1000); }
    ms = Math.round(ms);
    notice(text('retrying').replace('{seconds}', fmt(Math.ceil(ms / 1000))));
    schedule(ms);
  }

  function moveOn(s) {
    done = true;
    window.clearTimeout(timer);
    if (s.state === 'admitted') { notice(text('admitted')); }
    if (s.state === 'admitted' && s.continue_url) {
      window.location.replace(s.continue_url);
    } else {
      /* The server renders the admitted, expired and finished pages. */
      window.location.replace(root.getAttribute('data-page-url') || window.location.href);
    }
  }

  function poll() {
    if (inFlight || done) { return; }
    if (document.hidden) { return; }
    inFlight = true;
    fetch(statusUrl, { credentials: 'same-origin', cache: 'no-store', headers: { 'Accept': 'application/json' } })
      .then(function (response) {
        if (!response.ok) {
          var retry = parseInt(response.headers.get('Retry-After') || '', 10);
          var err = new Error('status ' + response.status);
          err.retryAfter = isNaN(retry) ? 0 : retry;
          throw err;
        }
        return response.json();
      })
      .then(function (s) {
        inFlight = false;
        failures = 0;
        notice('');
        /* A pre-queue entry keeps asking until the draw; any other change is the server's page to show. */
        if (s.state !== root.getAttribute('data-state') || (s.state !== 'waiting' && s.state !== 'pending')) {
          moveOn(s);
          return;
        }
        render(s);
        schedule(typeof s.poll_after_ms === 'number' && s.poll_after_ms > 0 ? s.poll_after_ms : 5000);
      })
      .catch(function (err) {
        inFlight = false;
        backoff(err && err.retryAfter ? err.retryAfter : 0);
      });
  }

  document.addEventListener('visibilitychange', function () {
    if (done) { return; }
    if (document.hidden) {
      window.clearTimeout(timer);
      timer = null;
    } else {
      /* Catch up if the poll fell due while hidden; otherwise keep to the server's schedule. */
      schedule(Math.max(0, dueAt - Date.now()));
    }
  });

  var first = parseInt(root.getAttribute('data-poll-after-ms') || '', 10);
  schedule(isNaN(first) ? 5000 : first);
}());
