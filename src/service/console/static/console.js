// ferric console: live updates by polling JSON with ETags every 2 s, and Mermaid diagrams.
(function () {
  "use strict";
  var body = document.body.dataset;
  var drawn = 0;

  function draw() {
    var box = document.getElementById("diagram");
    var src = document.getElementById("diagram-source");
    if (!box || !src || !window.mermaid) return;
    var text = src.textContent;
    drawn += 1;
    window.mermaid.render("seq" + drawn, text).then(function (r) {
      box.innerHTML = r.svg;
      box.dataset.drawn = String(drawn);
      box.dataset.drawnAt = String(Math.round(performance.now()));
    }).catch(function (e) {
      box.textContent = "The diagram could not be drawn: " + e;
    });
  }

  function poll(url, apply) {
    var etag = "";
    function tick() {
      var headers = etag ? { "If-None-Match": etag } : {};
      fetch(url, { headers: headers, credentials: "same-origin", cache: "no-cache" })
        .then(function (r) {
          if (r.status !== 200) return null;
          etag = r.headers.get("ETag") || "";
          return r.json();
        })
        .then(function (d) { if (d) apply(d); })
        .catch(function () {})
        .then(function () { setTimeout(tick, 2000); });
    }
    setTimeout(tick, 2000);
  }

  // Replaces an element's content only when the server's HTML changed (compared with what was
  // last put there, as the browser's own serialisation may differ), so focus and clicks survive.
  var shown = {};
  function fill(id, html) {
    var el = document.getElementById(id);
    if (!el || html === undefined) return;
    if (!(id in shown)) shown[id] = el.innerHTML;
    if (shown[id] !== html) {
      el.innerHTML = html;
      shown[id] = html;
    }
  }

  if (window.mermaid) {
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  }
  if (body.live === "fleet") {
    poll(body.liveUrl, function (d) {
      fill("counts", d.counts);
      fill("rows", d.rows);
      fill("pager", d.pager);
      var t = document.getElementById("total");
      if (t) t.textContent = String(d.total);
    });
  } else if (body.live === "node") {
    poll(body.liveUrl, function (d) {
      fill("node-state", d.state);
      fill("timeline", d.timeline);
      fill("run-info", d.run);
      fill("action-buttons", d.actions);
      var src = document.getElementById("diagram-source");
      if (src && src.textContent !== d.mermaid) {
        src.textContent = d.mermaid;
        draw();
      }
    });
  }
  draw();
})();
