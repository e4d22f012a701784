// runner view: live updates of a page while its run is in progress. Reading needs no script:
// without it a page simply does not refresh itself.
(function () {
  "use strict";
  var body = document.body;
  var INTERVAL = 1000;
  var timer = null;

  function liveUrl() { return body.getAttribute("data-live") || ""; }

  function swap(text) {
    var fresh = new DOMParser().parseFromString(text, "text/html");
    var next = fresh.getElementById("content");
    var current = document.getElementById("content");
    if (!next || !current) { return; }
    var open = {};
    current.querySelectorAll("details[open][id]").forEach(function (d) { open[d.id] = true; });
    current.replaceWith(next);
    next.querySelectorAll("details[id]").forEach(function (d) { if (open[d.id]) { d.open = true; } });
    body.setAttribute("data-live", fresh.body.getAttribute("data-live") || "");
    body.setAttribute("data-version", fresh.body.getAttribute("data-version") || "");
    var badge = document.getElementById("live");
    if (badge) { badge.hidden = !liveUrl(); }
  }

  function refresh() {
    return fetch(window.location.href, { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) { if (text) { swap(text); } });
  }

  function poll() {
    timer = null;
    var url = liveUrl();
    if (!url) { return; }
    fetch(url, { cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== body.getAttribute("data-version")) { return refresh(); }
      })
      .catch(function () { /* the viewer restarted or is gone: try again later */ })
      .then(function () { schedule(); });
  }

  function schedule() {
    if (!timer && liveUrl()) { timer = window.setTimeout(poll, INTERVAL); }
  }

  schedule();
})();
