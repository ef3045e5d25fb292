/* The countdown to a waiting room's opening: ticks every second and reloads the page at the opening,
 * where the server shows the queue (or the pre-queue). Without JavaScript the page's meta refresh
 * reloads it at the opening instead. */
(function () {
  'use strict';
  var el = document.getElementById('wr-countdown');
  if (!el) { return; }
  var opensAt = parseInt(el.getAttribute('data-opens-at') || '', 10) * 1000;
  if (isNaN(opensAt)) { return; }
  function two(n) { return n < 10 ? '0' + n : String(n); }
  function tick() {
    var left = Math.max(0, Math.ceil((opensAt - Date.now()) / 1000));
    var h = Math.floor(left / 3600);
    var m = Math.floor((left % 3600) / 60);
    var s = left % 60;
    el.textContent = (h > 0 ? h + ':' + two(m) : String(m)) + ':' + two(s);
    el.setAttribute('datetime', 'PT' + left + 'S');
    if (left <= 0) {
      /* A small spread so every waiting browser does not arrive in the same millisecond. */
      window.setTimeout(function () { window.location.reload(); }, Math.round(Math.random() * 1500));
      return;
    }
    window.setTimeout(tick, 1000 - (Date.now() % 1000));
  }
  tick();
}());
