/*
 * cloudpanel live: one /ws/status/ socket per page, applied to the DOM through data attributes.
 *
 * The server sends a snapshot of what the user may see, then deltas (instance, job, host,
 * metrics). A snapshot, the first or one after a reconnect or an overflow ("resync"), is the
 * truth: everything on the page is set from it again.
 *
 * What the page marks:
 *   [data-instance-state="<id>"]  an instance's state badge (instances/_state.html)
 *   tr[data-instance-id]          a row of an instance list, in [data-instance-list]
 *   [data-instance-detail="<id>"] the instance page (data-state, data-current-job)
 *   [data-host-status="<id>"]     a host's health badge (includes/host_status.html)
 *   [data-host-error="<id>"], [data-host-seen="<id>"]
 *   [data-host-counts], [data-instance-counts]  the overview's counts
 *   [data-job-id]                 job progress (CloudPanel.applyJob)
 *   [data-metrics]                metric charts (uPlot, vendored), history from the API
 * Needs cloudpanel.js (CloudPanel.applyJob, socketUrl, reloadSoon); uPlot only on chart pages.
 */
(function () {
  "use strict";

  var CP = window.CloudPanel;
  var FINISHED = CP.FINISHED;
  var LIVE_SELECTOR = [
    "[data-job-id]", "[data-instance-state]", "[data-instance-list]", "[data-host-status]",
    "[data-host-counts]", "[data-instance-counts]", "[data-metrics]"
  ].join(",");

  var known = { instances: {}, hosts: {}, jobs: {} };
  var applyingSnapshot = false; // counts are made once at its end, not once per row

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent("cloudpanel:" + name, { detail: detail }));
  }

  // ---- the socket ------------------------------------------------------------------------

  /*
   * Reconnect with exponential backoff and jitter. The delay starts over only once a snapshot
   * arrived: a server that accepts and drops at once is not hammered. 4401 (signed out) and
   * 4404 (no such socket) stop; 4403 (access lost) reconnects to what the user may see now.
   */
  function openStatus(path, onMessage) {
    var indicator = document.querySelector("[data-live-indicator]");
    var delay = 1000;
    var maxDelay = 30000;
    var socket = null;
    var stopped = false;
    var timer = null;

    function mark(state, title) {
      if (!indicator) return;
      indicator.hidden = false;
      indicator.setAttribute("data-state", state);
      indicator.textContent = title;
    }

    function connect() {
      timer = null;
      if (stopped) return;
      try {
        socket = new WebSocket(CP.socketUrl(path));
      } catch (err) {
        schedule();
        return;
      }
      socket.onmessage = function (event) {
        var data;
        try { data = JSON.parse(event.data); } catch (err) { return; }
        if (!data || typeof data.type !== "string") return;
        if (data.type === "snapshot") {
          delay = 1000;
          mark("open", "Live");
        }
        onMessage(data);
      };
      socket.onclose = function (event) {
        socket = null;
        if (event.code === 4401 || event.code === 4404) {
          stopped = true;
          mark("closed", event.code === 4401 ? "Signed out" : "Not available");
          return;
        }
        schedule();
      };
    }

    function schedule() {
      if (stopped || timer) return;
      mark("retry", "Reconnecting…");
      var wait = delay * (0.75 + Math.random() * 0.5);
      delay = Math.min(delay * 2, maxDelay);
      timer = window.setTimeout(connect, wait);
    }

    connect();
    return {
      close: function () {
        stopped = true;
        if (timer) window.clearTimeout(timer);
        if (socket) socket.close();
      },
      connected: function () { return socket !== null && socket.readyState === WebSocket.OPEN; },
      // Drop the connection as a network failure would: the socket reconnects and resyncs.
      drop: function () { if (socket) socket.close(); }
    };
  }

  // ---- instances -------------------------------------------------------------------------

  function stateLabel(view) {
    if (view.state === "deleted") return "Deleted";
    return view.state_display || view.state;
  }

  /*
   * The instance elements of the page by id, collected once: the server renders them and
   * nothing here adds any, and one attribute query per instance per event made a 1,000-row
   * snapshot cost seconds.
   */
  var pageIndex = null;
  function indexed(kind, id) {
    if (!pageIndex) {
      pageIndex = { badge: {}, row: {}, detail: {} };
      var add = function (map, key, el) { (map[key] = map[key] || []).push(el); };
      each("[data-instance-state]", function (el) { add(pageIndex.badge, el.getAttribute("data-instance-state"), el); });
      each("tr[data-instance-id]", function (el) { add(pageIndex.row, el.getAttribute("data-instance-id"), el); });
      each("[data-instance-detail]", function (el) { add(pageIndex.detail, el.getAttribute("data-instance-detail"), el); });
    }
    return pageIndex[kind][String(id)] || [];
  }

  function setBadge(el, cls, text, title) {
    var base = "badge dot " + cls;
    var changed = el.className.replace(/\s*live-changed\b/, "") !== base ||
      el.textContent !== text || (el.getAttribute("title") || "") !== (title || "");
    if (!changed) return; // writing the same again would still cost a style pass
    el.className = base;
    el.textContent = text;
    if (title) el.setAttribute("title", title);
    else el.removeAttribute("title");
    // A short halo where the page changed by itself; added two frames later so that it
    // restarts, without forcing a layout per badge.
    window.requestAnimationFrame(function () {
      window.requestAnimationFrame(function () { el.classList.add("live-changed"); });
    });
  }

  function markGone(id, label, title) {
    indexed("badge", id).forEach(function (badge) {
      setBadge(badge, "state-deleted", label, title);
    });
    indexed("row", id).forEach(function (row) {
      row.classList.add("is-gone");
      row.setAttribute("data-gone", "");
    });
    indexed("detail", id).forEach(function (root) {
      root.setAttribute("data-gone", "");
      each("[data-instance-gone]", function (el) { el.hidden = false; });
      each(".instance-actions button, [data-instance-console]", function (el) {
        el.setAttribute("disabled", "");
        el.setAttribute("aria-disabled", "true");
      });
    });
  }

  function applyInstance(view) {
    var id = String(view.id);
    if (view.state === "deleted") {
      delete known.instances[id];
      markGone(id, "Deleted");
      countInstances();
      return;
    }
    known.instances[id] = view;
    var failed = view.state === "error" || view.state === "missing";
    indexed("badge", id).forEach(function (badge) {
      setBadge(badge, "state-" + view.state, stateLabel(view), view.state_reason);
    });
    var rows = indexed("row", id);
    rows.forEach(function (row) {
      if (row.hasAttribute("data-gone")) {
        row.classList.remove("is-gone");
        row.removeAttribute("data-gone");
      }
      var reason = failed ? view.state_reason || "" : "";
      each("[data-instance-reason]", function (el) {
        if (el.textContent !== reason) el.textContent = reason;
        if (el.getAttribute("title") !== reason) el.setAttribute("title", reason);
        if (el.hidden !== !reason) el.hidden = !reason;
      }, row);
      showJobInRow(row, view.current_job);
    });
    if (!rows.length) hintNewInstance(view);
    checkDetail(view);
    countInstances();
  }

  /* A job started elsewhere shows up in the row's job cell; its events then fill it in. */
  function showJobInRow(row, jobId) {
    jobId = Number(jobId);
    var cell = row.querySelector("[data-instance-job]");
    if (!cell || !jobId || cell.querySelector('[data-job-id="' + jobId + '"]')) return;
    cell.innerHTML =
      '<div data-job-id="' + jobId + '" data-job-state="pending" data-reload-on-finish>' +
      '<a class="cell-sub" data-job-kind href="/jobs/' + jobId + '/">job #' + jobId + "</a>" +
      '<div class="progress-line"><div class="progress"><div class="progress-bar" data-job-progress' +
      ' role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" style="width: 0%">' +
      '</div></div><span class="progress-text" data-job-progress-text>0%</span></div>' +
      '<div class="job-step cell-sub" data-job-step></div></div>';
    if (known.jobs[jobId]) CP.applyJob(known.jobs[jobId]);
  }

  /* An instance the list does not show yet: say so (rows are the server's to render). */
  function hintNewInstance(view) {
    var list = document.querySelector("[data-instance-list]");
    var hint = document.querySelector("[data-new-instances]");
    if (!list || !hint) return;
    var filter = list.getAttribute("data-state-filter");
    if (filter && filter !== view.state) return;
    hint.hidden = false;
  }

  /*
   * The instance page: the badge follows every event. Its actions, console buttons, guest and
   * job card are the server's: when they would differ (another state, or a job started
   * elsewhere), reload once. While the page watches a job of its own, the job's end reloads
   * it (data-reload-on-finish), so the state changes the job makes only move the badge.
   */
  function checkDetail(view) {
    var root = indexed("detail", view.id)[0];
    if (!root) return;
    if (root.hasAttribute("data-gone")) {
      reloadOnce(); // back in sight (a snapshot after access returned): render it afresh
      return;
    }
    var renderedJob = root.getAttribute("data-current-job") || "";
    var card = renderedJob
      ? document.querySelector('[data-reload-on-finish][data-job-id="' + renderedJob + '"]')
      : null;
    if (card && FINISHED.indexOf(card.getAttribute("data-job-state")) === -1) return;
    var job = view.current_job ? String(view.current_job) : "";
    if (view.state !== root.getAttribute("data-state") || (job && job !== renderedJob)) {
      reloadOnce();
    }
  }

  /* At most one automatic reload every few seconds, whatever the events say. */
  function reloadOnce() {
    var key = "cloudpanel:reloaded:" + window.location.pathname;
    var last = 0;
    try { last = Number(window.sessionStorage.getItem(key)) || 0; } catch (err) { /* private mode */ }
    var wait = Math.max(0, last + 5000 - Date.now());
    window.setTimeout(function () {
      try { window.sessionStorage.setItem(key, String(Date.now())); } catch (err) { /* ignore */ }
      CP.reloadSoon();
    }, wait);
  }

  function countInstances() {
    var box = document.querySelector("[data-instance-counts]");
    if (applyingSnapshot || !box || !box.hasAttribute("data-ready")) return;
    var counts = {};
    var labels = {};
    var total = 0;
    Object.keys(known.instances).forEach(function (id) {
      var view = known.instances[id];
      counts[view.state] = (counts[view.state] || 0) + 1;
      labels[view.state] = stateLabel(view);
      total += 1;
    });
    box.querySelector("[data-instance-total]").textContent = String(total);
    var row = box.querySelector("[data-instance-count-row]");
    row.textContent = "";
    var states = Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a] || (a < b ? -1 : 1); });
    states.forEach(function (state) {
      var badge = document.createElement("span");
      badge.className = "badge dot state-" + state;
      badge.setAttribute("data-instance-count", state);
      badge.textContent = counts[state] + " " + labels[state].toLowerCase();
      row.appendChild(badge);
    });
    if (!states.length) {
      var none = document.createElement("span");
      none.className = "muted small";
      none.textContent = "none yet";
      row.appendChild(none);
    }
  }

  // ---- hosts -----------------------------------------------------------------------------

  function ago(iso) {
    if (!iso) return "";
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (!(seconds >= 0) || seconds < 60) return "just now";
    var steps = [[86400, "day"], [3600, "hour"], [60, "minute"]];
    for (var i = 0; i < steps.length; i++) {
      var n = Math.floor(seconds / steps[i][0]);
      if (n >= 1) return n + " " + steps[i][1] + (n === 1 ? "" : "s") + " ago";
    }
    return "just now";
  }

  function refreshAgo() {
    each("[data-host-seen][data-seen-at]", function (el) {
      el.textContent = ago(el.getAttribute("data-seen-at"));
    });
  }

  function applyHost(view) {
    var id = String(view.id);
    known.hosts[id] = view;
    each('[data-host-status="' + id + '"]', function (badge) {
      setBadge(badge, "status-" + view.status, view.status_display || view.status);
    });
    each('[data-host-error="' + id + '"]', function (el) {
      var text = el.querySelector("[data-host-error-text]") || el;
      text.textContent = view.last_error || "";
      el.setAttribute("title", view.last_error || "");
      el.hidden = !(view.last_error && view.status !== "online");
    });
    if (view.last_seen_at) {
      each('[data-host-seen="' + id + '"]', function (el) {
        el.setAttribute("data-seen-at", view.last_seen_at);
        el.setAttribute("title", new Date(view.last_seen_at).toLocaleString());
        el.classList.remove("muted");
        el.textContent = ago(view.last_seen_at);
      });
    }
    countHosts();
  }

  function countHosts() {
    var box = document.querySelector("[data-host-counts]");
    if (applyingSnapshot || !box || !box.hasAttribute("data-ready")) return;
    var counts = { online: 0 };
    var labels = { online: "online" };
    var total = 0;
    Object.keys(known.hosts).forEach(function (id) {
      var view = known.hosts[id];
      counts[view.status] = (counts[view.status] || 0) + 1;
      labels[view.status] = (view.status_display || view.status).toLowerCase();
      total += 1;
    });
    each("[data-hosts-total]", function (el) { el.textContent = String(total); });
    box.textContent = "";
    Object.keys(counts).forEach(function (status) {
      if (!counts[status] && status !== "online") return;
      var badge = document.createElement("span");
      badge.className = "badge dot status-" + status;
      badge.setAttribute("data-host-count", status);
      badge.textContent = counts[status] + " " + labels[status];
      box.appendChild(badge);
    });
  }

  // ---- jobs ------------------------------------------------------------------------------

  function applyJob(job, options) {
    known.jobs[String(job.id)] = job;
    CP.applyJob(job, options);
  }

  /*
   * Events sent while the socket was down are lost, and a snapshot lists active jobs only: a
   * job the page shows as active but the snapshot does not list has finished (or is out of
   * sight): read it once from the API.
   */
  function catchUpJobs(activeIds) {
    var ids = {};
    each("[data-job-id]", function (el) {
      var id = el.getAttribute("data-job-id");
      if (FINISHED.indexOf(el.getAttribute("data-job-state")) !== -1 || activeIds[id]) return;
      ids[id] = true;
    });
    Object.keys(ids).slice(0, 20).forEach(function (id) {
      fetch("/api/v1/jobs/" + id + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) { if (job && job.id) applyJob(job); })
        .catch(function () { /* the next snapshot tries again */ });
    });
  }

  // ---- messages --------------------------------------------------------------------------

  function applySnapshot(data) {
    applyingSnapshot = true;
    try {
      applySnapshotRows(data);
    } finally {
      applyingSnapshot = false;
    }
    // The counts are the snapshot's from now on (before it, the server's rendering stays).
    each("[data-host-counts], [data-instance-counts]", function (el) { el.setAttribute("data-ready", ""); });
    countHosts();
    countInstances();
  }

  function applySnapshotRows(data) {
    var seen = {};
    known.instances = {};
    (data.instances || []).forEach(function (view) {
      seen[String(view.id)] = true;
      applyInstance(view);
    });
    // Instances on the page that the snapshot no longer has: deleted, or out of sight now.
    each("[data-instance-state]", function (badge) {
      var id = badge.getAttribute("data-instance-state");
      if (id && !seen[id]) markGone(id, "Gone", "Deleted, or no longer in your projects");
    });
    var active = {};
    (data.jobs || []).forEach(function (job) {
      active[String(job.id)] = true;
      applyJob(job, { snapshot: true });
    });
    catchUpJobs(active);
    known.hosts = {};
    (data.hosts || []).forEach(applyHost);
    var metrics = data.metrics || {};
    var byInstance = metrics.instances || {};
    Object.keys(byInstance).forEach(function (id) { charts.sample("instance", id, byInstance[id]); });
    var byHost = metrics.hosts || {};
    Object.keys(byHost).forEach(function (id) { charts.sample("host", id, byHost[id]); });
  }

  function onMessage(data) {
    if (data.type === "snapshot") applySnapshot(data);
    else if (data.type === "instance" && data.instance) applyInstance(data.instance);
    else if (data.type === "job" && data.job) applyJob(data.job);
    else if (data.type === "host" && data.host) applyHost(data.host);
    else if (data.type === "metrics") {
      (data.instances || []).forEach(function (sample) {
        charts.sample("instance", sample.id, sample, data.t);
      });
      if (data.host != null && data.host_totals) charts.sample("host", data.host, data.host_totals, data.t);
    }
    emit("status", data);
  }

  // ---- charts ----------------------------------------------------------------------------

  var COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea"];

  function formatBytes(value, perSecond) {
    if (value == null || isNaN(value)) return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    var v = Math.abs(value);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    var digits = v >= 100 || i === 0 ? 0 : v >= 10 ? 1 : 2;
    return (value < 0 ? "-" : "") + v.toFixed(digits) + " " + units[i] + (perSecond ? "/s" : "");
  }

  var FORMATS = {
    percent: function (v) { return v == null ? "—" : (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + " %"; },
    bytes: function (v) { return formatBytes(v, false); },
    rate: function (v) { return formatBytes(v, true); },
    count: function (v) { return v == null ? "—" : String(Math.round(v)); }
  };

  // What each chart shows: figures of a sample (cloudpanel.live.metrics), one line each.
  var CHARTS = {
    cpu: { unit: "percent", series: [["CPU", "cpu_percent"]] },
    memory: { unit: "bytes", series: [["Used", "memory_used_bytes"], ["Total", "memory_total_bytes", true]] },
    disk: { unit: "rate", series: [["Read", "disk_read_bps"], ["Write", "disk_write_bps"]] },
    net: { unit: "rate", series: [["Received", "net_rx_bps"], ["Sent", "net_tx_bps"]] },
    instances: { unit: "count", series: [["Running", "instances"]] }
  };

  // Byte axes tick at 1, 2, 4 … 512 of a unit (KiB, MiB, …), never at 3.91 KiB.
  var BINARY_INCRS = [];
  for (var power = 0; power <= 5; power++) {
    for (var m = 1; m < 1024; m *= 2) BINARY_INCRS.push(m * Math.pow(1024, power));
  }

  var WHOLE_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

  function showLatest(u) {
    var n = u.data[0].length;
    if (u.cursor.idx == null && n) u.setLegend({ idx: n - 1 }, false);
  }

  function hexToRgba(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  /* One metrics panel ([data-metrics]): its samples (the last hour) and its uPlot charts. */
  function MetricsPanel(root) {
    this.root = root;
    this.kind = root.getAttribute("data-metrics-kind");
    this.id = root.getAttribute("data-metrics-id");
    this.retention = Number(root.getAttribute("data-metrics-retention")) || 3600;
    this.interval = 5;
    this.xs = [];
    this.cols = {};
    this.charts = [];
    this.loaded = false;
    this.pending = [];
    var self = this;
    each("[data-chart]", function (el) { self.addChart(el); }, root);
    this.load();
    if (window.ResizeObserver) {
      new ResizeObserver(function () { self.resize(); }).observe(root);
    }
  }

  MetricsPanel.prototype.column = function (key) {
    if (!this.cols[key]) {
      var col = [];
      for (var i = 0; i < this.xs.length; i++) col.push(null);
      this.cols[key] = col;
    }
    return this.cols[key];
  };

  MetricsPanel.prototype.addChart = function (el) {
    var spec = CHARTS[el.getAttribute("data-chart")];
    if (!spec || !window.uPlot) return;
    var format = FORMATS[spec.unit];
    var plotBox = el.querySelector("[data-chart-plot]") || el;
    var series = [{ value: function (u, t) { return t == null ? "—" : new Date(t * 1000).toLocaleTimeString(); } }];
    var keys = [];
    spec.series.forEach(function (s, i) {
      var color = s[2] ? "#94a3b8" : COLORS[i % COLORS.length];
      keys.push(s[1]);
      series.push({
        label: s[0],
        stroke: color,
        width: s[2] ? 1 : 1.75,
        dash: s[2] ? [4, 4] : undefined,
        fill: s[2] ? undefined : hexToRgba(color, 0.08),
        points: { show: false },
        spanGaps: false,
        value: function (u, v) { return format(v); }
      });
    });
    var axis = { stroke: "#6b7588", grid: { stroke: "#eef1f5", width: 1 }, ticks: { stroke: "#e3e7ee", width: 1 },
                 font: "11px system-ui, sans-serif" };
    var opts = {
      width: Math.max(200, plotBox.clientWidth || 300),
      height: 170,
      cursor: { drag: { x: false, y: false } },
      legend: { show: true },
      scales: {
        // At least a minute wide: a chart's first samples sit at its right, not spread out.
        x: { time: true, range: function (u, min, max) { return [Math.min(min, max - 60), max]; } },
        y: {
          range: function (u, min, max) {
            var top = max > 0 ? max * 1.15 : 1;
            if (spec.unit === "percent") top = Math.max(top, 5);
            return [0, top];
          }
        }
      },
      axes: [
        Object.assign({}, axis),
        Object.assign({}, axis, {
          size: 72,
          incrs: spec.unit === "count" ? WHOLE_INCRS
            : spec.unit === "bytes" || spec.unit === "rate" ? BINARY_INCRS : undefined,
          values: function (u, vals) { return vals.map(format); }
        })
      ],
      series: series,
      // Off the chart, the legend shows the newest sample rather than dashes.
      hooks: { setCursor: [showLatest] }
    };
    var self = this;
    var plot = new window.uPlot(opts, this.dataFor(keys), plotBox);
    this.charts.push({ el: el, box: plotBox, plot: plot, keys: keys });
    // Later columns are created on demand; dataFor reads them afresh on each update.
    keys.forEach(function (key) { self.column(key); });
  };

  MetricsPanel.prototype.dataFor = function (keys) {
    var data = [this.xs];
    var self = this;
    keys.forEach(function (key) { data.push(self.column(key)); });
    return data;
  };

  MetricsPanel.prototype.resize = function () {
    this.charts.forEach(function (c) {
      var width = Math.max(200, c.box.clientWidth);
      if (Math.abs(width - c.plot.width) > 1) c.plot.setSize({ width: width, height: 170 });
    });
  };

  MetricsPanel.prototype.load = function () {
    var self = this;
    fetch(this.root.getAttribute("data-metrics"), {
      credentials: "same-origin", headers: { Accept: "application/json" }
    })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        // The history first, then what the socket brought meanwhile (newer ones only).
        self.loaded = true;
        if (body) {
          self.interval = Number(body.interval) || self.interval;
          (body.samples || []).forEach(function (s) { self.push(s, s.t); });
        }
        self.pending.forEach(function (p) { self.push(p[0], p[1]); });
        self.pending = [];
        self.render();
      })
      .catch(function () {
        self.loaded = true;
        self.render();
      });
  };

  /* One sample, oldest to newest; older or repeated ones are ignored. */
  MetricsPanel.prototype.push = function (sample, t) {
    t = Number(sample.t != null ? sample.t : t);
    if (!t) return false;
    if (!this.loaded) {
      this.pending.push([sample, t]);
      return false;
    }
    var last = this.xs.length ? this.xs[this.xs.length - 1] : null;
    if (last !== null && t <= last) return false;
    var self = this;
    var keys = Object.keys(this.cols);
    // A gap (the instance was off, the watcher down): a null breaks the line there.
    if (last !== null && t - last > this.interval * 3 + 1) {
      this.xs.push(last + this.interval);
      keys.forEach(function (key) { self.cols[key].push(null); });
    }
    this.xs.push(t);
    keys.forEach(function (key) {
      var v = sample[key];
      self.cols[key].push(typeof v === "number" ? v : null);
    });
    // Keep the last hour.
    var cut = 0;
    while (cut < this.xs.length && this.xs[cut] < t - this.retention) cut += 1;
    if (cut) {
      this.xs.splice(0, cut);
      keys.forEach(function (key) { self.cols[key].splice(0, cut); });
    }
    return true;
  };

  MetricsPanel.prototype.render = function () {
    var self = this;
    var points = 0;
    var firstKey = Object.keys(this.cols)[0];
    if (firstKey) this.cols[firstKey].forEach(function (v) { if (v !== null) points += 1; });
    this.charts.forEach(function (c) {
      c.plot.setData(self.dataFor(c.keys));
      c.el.setAttribute("data-points", String(points));
      showLatest(c.plot);
    });
    this.root.setAttribute("data-points", String(points));
    each("[data-metrics-empty]", function (el) { el.hidden = points > 0; }, this.root);
    // No samples, no empty axes: the charts show with the first sample, at their real width.
    var grid = this.root.querySelector("[data-chart-grid]");
    if (grid && grid.hidden === points > 0) {
      grid.hidden = points === 0;
      this.resize();
    }
    var latest = this.root.querySelector("[data-metrics-latest]");
    if (latest && this.xs.length) {
      latest.textContent = "Last sample " + new Date(this.xs[this.xs.length - 1] * 1000).toLocaleTimeString() +
        " · every " + this.interval + " s";
    }
    emit("metrics-rendered", { kind: this.kind, id: this.id, points: points });
  };

  var charts = {
    panels: [],
    init: function () {
      var self = this;
      each("[data-metrics]", function (root) { self.panels.push(new MetricsPanel(root)); });
    },
    sample: function (kind, id, sample, t) {
      if (!sample) return;
      this.panels.forEach(function (panel) {
        if (panel.kind === kind && panel.id === String(id) && panel.push(sample, t)) panel.render();
      });
    }
  };

  // ---- start -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    charts.init();
    window.setInterval(refreshAgo, 30000);
    if (!document.querySelector(LIVE_SELECTOR)) return;
    CP.socket = openStatus("/ws/status/", onMessage);
  });

  // apply(frame): what the socket does with a frame, for a console or a test to replay.
  CP.live = { known: known, charts: charts, formatBytes: formatBytes, apply: onMessage };
})();
