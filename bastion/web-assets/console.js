// The web console's only script of its own (served from the bastion; the page's CSP allows
// no inline script). It starts asciinema-player on the session page, honours #t=SECONDS,
// and drives the live view's WebSocket.
(function () {
  "use strict";

  function startAt() {
    var m = /(?:^#|&)t=([0-9]+(?:\.[0-9]+)?)/.exec(window.location.hash);
    return m ? parseFloat(m[1]) : 0;
  }

  var box = document.getElementById("player");
  var player = null;
  function play() {
    if (!box || !window.AsciinemaPlayer) { return; }
    var speed = parseFloat((document.getElementById("speed") || {}).value || "1");
    var idle = parseFloat((document.getElementById("idle") || {}).value || "2");
    var at = startAt();
    if (player) { player.dispose(); }
    box.textContent = "";
    player = window.AsciinemaPlayer.create(box.dataset.cast, box, {
      speed: speed > 0 ? speed : 1,
      idleTimeLimit: idle > 0 ? idle : undefined,
      startAt: at,
      autoPlay: true,
      preload: true,
      fit: "width"
    });
    box.dataset.started = String(at);
  }
  if (box) {
    play();
    ["speed", "idle"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.addEventListener("change", play); }
    });
    window.addEventListener("hashchange", function () {
      if (player) { player.seek(startAt()); player.play(); }
    });
  }

  // Live: the terminal output as it happens, as text (escape sequences left out).
  var live = document.getElementById("live");
  if (live) {
    var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(proto + "//" + window.location.host + live.dataset.ws);
    ws.binaryType = "arraybuffer";
    var decoder = new TextDecoder();
    var state = document.getElementById("live-state");
    ws.onmessage = function (ev) {
      var text = typeof ev.data === "string" ? ev.data : decoder.decode(ev.data, { stream: true });
      text = text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, "").replace(/\x1b[\]P^_][^\x07\x1b]*(\x07|\x1b\\)?/g, "").replace(/\r/g, "");
      live.textContent = (live.textContent + text).slice(-20000);
      live.scrollTop = live.scrollHeight;
    };
    ws.onclose = function () { if (state) { state.textContent = "ended"; } };
  }
})();
