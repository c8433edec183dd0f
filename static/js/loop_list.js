// The loop list: live refresh, and "select every loop on this page".
// Loaded by templates/loops/loop_list.html; no inline script (the Content-Security-Policy
// allows only the app's own script files) and no htmx expression (htmx never evaluates one).
(function () {
  "use strict";

  function liveRefreshPaused() {
    var live = document.getElementById("live-refresh");
    // While any row is ticked the poll would wipe the selection.
    return (live && !live.checked) || document.querySelector("#loop-results input[name=loop]:checked") !== null;
  }

  // The table polls every 10 s (hx-trigger on #loop-results); cancel a poll while paused.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "loop-results" && liveRefreshPaused()) {
      event.preventDefault();
    }
  });

  // A poll that lands on the login page (session expired) reloads the page instead of
  // swapping a login form into the table.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.responseURL.indexOf("/accounts/login/") !== -1) {
      window.location.reload();
    }
  });

  // "Select every loop on this page" toggles the row checkboxes.
  document.addEventListener("change", function (event) {
    if (event.target.matches("input[data-select-page]")) {
      document.querySelectorAll("#loop-results input[name=loop]").forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
  });
})();
