/* cloudpanel: job progress on the page (applyJob; the events come from live.js), CSRF-aware
 * fetch, confirm prompts. No deps. */
(function () {
  "use strict";

  var FINISHED = ["succeeded", "failed", "cancelled"];
  var LABELS = {
    pending: "Pending", running: "Running", succeeded: "Succeeded",
    failed: "Failed", cancelled: "Cancelled"
  };

  function getCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  /* POST with the session's CSRF token (Django reads it from X-CSRFToken). */
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-CSRFToken": getCookie("csrftoken") || "",
        "Content-Type": "application/json",
        "Accept": "application/json"
      },
      body: body ? JSON.stringify(body) : null
    });
  }

  function socketUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path;
  }

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
  }

  /*
   * Apply one job event to every element that shows that job. options.snapshot: the job came
   * in a status snapshot (it may have been on the page all along), not as news.
   */
  function applyJob(job, options) {
    var nodes = document.querySelectorAll('[data-job-id="' + job.id + '"]');
    var progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
    var finished = FINISHED.indexOf(job.status) !== -1;
    nodes.forEach(function (root) {
      var wasActive = FINISHED.indexOf(root.getAttribute("data-job-state")) === -1;
      if (finished && wasActive && root.hasAttribute("data-reload-on-finish")) reloadSoon();
      root.setAttribute("data-job-state", job.status);
      root.querySelectorAll("[data-job-progress]").forEach(function (bar) {
        bar.style.width = progress + "%";
        bar.setAttribute("aria-valuenow", String(progress));
      });
      setText(root, "[data-job-progress-text]", progress + "%");
      root.querySelectorAll("[data-job-status]").forEach(function (badge) {
        badge.className = "badge dot job-" + job.status;
        badge.textContent = LABELS[job.status] || job.status;
      });
      setText(root, "[data-job-step]", job.step || "");
      setText(root, "[data-job-kind]", job.kind || "");
      root.querySelectorAll("[data-job-error]").forEach(function (el) {
        el.textContent = job.error || "";
        el.hidden = !job.error;
      });
      root.querySelectorAll("[data-job-active-only]").forEach(function (el) {
        el.hidden = finished;
      });
    });
    var detail = { job: job, known: nodes.length > 0, snapshot: !!(options && options.snapshot) };
    document.dispatchEvent(new CustomEvent("cloudpanel:job", { detail: detail }));
  }

  /*
   * [data-reload-on-finish] marks a job whose end changes what the page shows (an
   * instance's state): when it finishes, reload once, after a moment to show the result.
   */
  var reloading = false;
  var leaving = false; // a form was sent: its answer is the next page, a reload would drop it
  function reloadSoon() {
    if (reloading) return;
    reloading = true;
    window.setTimeout(function () { if (!leaving) window.location.reload(); }, 1000);
  }
  reloadSoon.pending = function () { return reloading; };

  /* Forms and buttons with data-confirm ask first. */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
  // Registered after the confirm prompts, so a cancelled submit is already marked.
  document.addEventListener("submit", function (event) {
    if (!event.defaultPrevented) leaving = true;
  });

  /* Close the user menu when clicking elsewhere. */
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  window.CloudPanel = {
    getCookie: getCookie,
    post: post,
    socketUrl: socketUrl,
    applyJob: applyJob,
    reloadSoon: reloadSoon,
    FINISHED: FINISHED,
    socket: null // the page's status socket (live.js)
  };
})();
