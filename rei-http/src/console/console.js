// The REI console's only script: a page that asks for it (data-refresh="<seconds>") reloads itself, unless the
// operator is typing in a form; a form's button is disabled once pressed, so that a double click sends it once.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (seconds > 0) {
    setInterval(function () {
      var active = document.activeElement;
      if (active && (active.tagName === "INPUT" || active.tagName === "SELECT")) { return; }
      window.location.reload();
    }, seconds * 1000);
  }
  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("button[type=submit]");
    if (button) { setTimeout(function () { button.disabled = true; }, 0); }
  });
})();
