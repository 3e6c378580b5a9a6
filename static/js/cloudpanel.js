/* cloudpanel: live job updates over /ws/jobs/, CSRF-aware fetch, confirm prompts. No deps. */
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

  /* Apply one job event to every element that shows that job. */
  function applyJob(job) {
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
      root.querySelectorAll("[data-job-error]").forEach(function (el) {
        el.textContent = job.error || "";
        el.hidden = !job.error;
      });
      root.querySelectorAll("[data-job-active-only]").forEach(function (el) {
        el.hidden = finished;
      });
    });
    document.dispatchEvent(new CustomEvent("cloudpanel:job", { detail: { job: job, known: nodes.length > 0 } }));
  }

  /*
   * [data-reload-on-finish] marks a job whose end changes what the page shows (an
   * instance's state): when it finishes, reload once, after a moment to show the result.
   */
  var reloading = false;
  function reloadSoon() {
    if (reloading) return;
    reloading = true;
    window.setTimeout(function () { window.location.reload(); }, 1000);
  }

  /* Events sent before the socket opened are lost: fetch the watched jobs still active. */
  function catchUp() {
    document.querySelectorAll("[data-reload-on-finish][data-job-id]").forEach(function (el) {
      if (FINISHED.indexOf(el.getAttribute("data-job-state")) !== -1) return;
      fetch("/api/v1/jobs/" + el.getAttribute("data-job-id") + "/", {
        credentials: "same-origin", headers: { Accept: "application/json" }
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) { if (job && job.id) applyJob(job); })
        .catch(function () { /* the socket still brings the next event */ });
    });
  }

  /*
   * Open /ws/jobs/ (every job the user may see) or /ws/jobs/<id>/ and keep it open:
   * reconnect with exponential backoff and jitter, except when the server says the user
   * is logged out (4401) or may not see the job (4404).
   */
  function watchJobs(path, options) {
    options = options || {};
    var indicator = document.querySelector("[data-live-indicator]");
    var delay = 1000;
    var maxDelay = 30000;
    var socket = null;
    var stopped = false;

    function mark(state, title) {
      if (!indicator) return;
      indicator.hidden = false;
      indicator.setAttribute("data-state", state);
      indicator.textContent = title;
    }

    function connect() {
      if (stopped) return;
      try {
        socket = new WebSocket(socketUrl(path));
      } catch (err) {
        schedule();
        return;
      }
      socket.onopen = function () {
        delay = 1000;
        mark("open", "Live");
        if (options.onOpen) options.onOpen();
      };
      socket.onmessage = function (event) {
        var data;
        try { data = JSON.parse(event.data); } catch (err) { return; }
        if (data && data.type === "job" && data.job) {
          applyJob(data.job);
          if (options.onJob) options.onJob(data.job);
        }
      };
      socket.onclose = function (event) {
        if (event.code === 4401 || event.code === 4404) {
          stopped = true;
          mark("closed", event.code === 4401 ? "Signed out" : "Not available");
          return;
        }
        schedule();
      };
    }

    function schedule() {
      if (stopped) return;
      mark("retry", "Reconnecting…");
      var wait = delay * (0.75 + Math.random() * 0.5);
      delay = Math.min(delay * 2, maxDelay);
      window.setTimeout(connect, wait);
    }

    connect();
    return {
      close: function () {
        stopped = true;
        if (socket) socket.close();
      }
    };
  }

  /* Forms and buttons with data-confirm ask first. */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  /* Close the user menu when clicking elsewhere. */
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  /* Pages opt in: <body data-job-socket="/ws/jobs/5/">, or any [data-job-id] on the page. */
  document.addEventListener("DOMContentLoaded", function () {
    // An empty data-job-socket means "nothing live here" (a finished job).
    var holder = document.querySelector("[data-job-socket]");
    var path = null;
    if (holder) path = holder.getAttribute("data-job-socket") || null;
    else if (document.querySelector("[data-job-id]")) path = "/ws/jobs/";
    if (path) window.CloudPanel.socket = watchJobs(path, { onOpen: catchUp });
  });

  window.CloudPanel = {
    getCookie: getCookie,
    post: post,
    watchJobs: watchJobs,
    applyJob: applyJob,
    socket: null
  };
})();
