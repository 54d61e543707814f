// orchestrate dashboard: keeps the tables marked data-refresh up to date.
// Every few seconds each one asks the server for its rows again (the same template renders
// them), with the ETag of the rows it shows: the server answers 304 when nothing changed, and
// the rows are swapped only when something did. Unticking "live" pauses it. No framework; the
// pages work without this script, only not live.
"use strict";
(function () {
  function refresh(body) {
    var url = body.getAttribute("data-refresh");
    var etag = body.getAttribute("data-etag");
    var interval = parseInt(body.getAttribute("data-interval") || "3000", 10);
    var stamp = document.getElementById("refreshed");
    var live = document.getElementById("live");
    function paused() { return document.hidden || (live !== null && !live.checked); }
    function tick() {
      if (paused()) { setTimeout(tick, interval); return; }
      var headers = { "Accept": "text/html" };
      var fresh = null;
      if (etag) { headers["If-None-Match"] = etag; }
      fetch(url, { credentials: "same-origin", headers: headers, cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) {
            if (stamp) { stamp.textContent = "signed out: reload to sign in"; }
            return null;
          }
          if (response.status === 304) { return ""; }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          fresh = response.headers.get("ETag");
          return response.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          if (html !== "" && !paused()) {
            body.innerHTML = html;  // server-rendered and autoescaped
            etag = fresh;
            if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
          }
          setTimeout(tick, interval);
        })
        .catch(function (error) {
          if (stamp) { stamp.textContent = "not updated: " + error.message; }
          setTimeout(tick, interval * 2);
        });
    }
    setTimeout(tick, interval);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var bodies = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < bodies.length; i++) { refresh(bodies[i]); }
  });
})();
