/* The join gate's proof of work: find a number s such that SHA-256("<challenge>:<s>") starts with
 * `difficulty` zero bits, using Web Crypto, then post it; the server answers with the place. Nothing for
 * the visitor to do. Without JavaScript (or Web Crypto) the page's explanation stays visible. */
(function () {
  'use strict';
  var BATCH = 512;

  function zeroBits(bytes) {
    var bits = 0;
    for (var i = 0; i < bytes.length; i++) {
      var b = bytes[i];
      if (b === 0) { bits += 8; continue; }
      while ((b & 0x80) === 0) { bits += 1; b <<= 1; }
      return bits;
    }
    return bits;
  }

  /* Resolves with the solution (a decimal string); exposed for measuring the solve time. */
  function solve(challenge, difficulty) {
    var encoder = new TextEncoder();
    var prefix = challenge + ':';
    function batch(start) {
      var hashes = [];
      for (var i = 0; i < BATCH; i++) {
        hashes.push(crypto.subtle.digest('SHA-256', encoder.encode(prefix + (start + i))));
      }
      return Promise.all(hashes).then(function (results) {
        for (var j = 0; j < results.length; j++) {
          if (zeroBits(new Uint8Array(results[j])) >= difficulty) { return String(start + j); }
        }
        return batch(start + BATCH);
      });
    }
    return batch(0);
  }
  window.wrSolve = solve;

  var form = document.getElementById('wr-challenge');
  if (!form || !window.crypto || !crypto.subtle || !window.TextEncoder || !window.Promise) { return; }
  var manual = document.getElementById('wr-challenge-manual');
  var working = document.getElementById('wr-challenge-working');
  if (manual) { manual.hidden = true; }
  if (working) { working.hidden = false; }
  var started = Date.now();
  solve(form.elements.challenge.value, parseInt(form.getAttribute('data-difficulty'), 10) || 1).then(function (s) {
    form.elements.solution.value = s;
    document.documentElement.setAttribute('data-solve-ms', String(Date.now() - started));
    form.submit();
  }, function () {
    if (working) { working.hidden = true; }
    if (manual) { manual.hidden = false; }
  });
})();
