/*
 * The portal: the project switcher follows its select (its button stays for no-script), and
 * the jobs card takes in the project's jobs that start while the page is open (live.js
 * moves their progress from then on, as for the jobs rendered with the page).
 */
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function jobItem(job) {
    var item = el("li", "job-item");
    item.setAttribute("data-job-id", String(job.id));
    item.setAttribute("data-job-state", job.status || "pending");
    var line = el("div", "job-line");
    var kind = el("span", "job-kind", job.kind || "job");
    kind.setAttribute("data-job-kind", "");
    line.appendChild(kind);
    line.appendChild(document.createTextNode(" "));
    line.appendChild(el("span", "muted small", (job.target && job.target.name) || ""));
    var badge = el("span", "badge dot job-" + (job.status || "pending"), job.status || "pending");
    badge.setAttribute("data-job-status", "");
    line.appendChild(badge);
    item.appendChild(line);
    var progressLine = el("div", "progress-line");
    var bar = el("div", "progress");
    var fill = el("div", "progress-bar");
    fill.setAttribute("data-job-progress", "");
    fill.setAttribute("role", "progressbar");
    bar.appendChild(fill);
    progressLine.appendChild(bar);
    var pct = el("span", "progress-text", "0%");
    pct.setAttribute("data-job-progress-text", "");
    progressLine.appendChild(pct);
    item.appendChild(progressLine);
    var step = el("div", "job-step cell-sub");
    step.setAttribute("data-job-step", "");
    item.appendChild(step);
    return item;
  }

  function takeJob(list, job) {
    if (!job || !job.id || String(job.project) !== list.getAttribute("data-project")) return;
    var instance = list.getAttribute("data-instance");
    var target = job.target || {};
    if (instance && !(target.type === "instance" && String(target.id) === instance)) return;
    if (document.querySelector('[data-job-id="' + job.id + '"]')) return;
    list.insertBefore(jobItem(job), list.firstChild);
    var empty = list.parentNode.querySelector("[data-no-jobs]");
    if (empty) empty.hidden = true;
    if (window.CloudPanel && window.CloudPanel.applyJob) window.CloudPanel.applyJob(job);
  }

  document.addEventListener("cloudpanel:status", function (event) {
    var data = event.detail || {};
    var jobs = data.type === "job" ? [data.job] : data.type === "snapshot" ? data.jobs || [] : [];
    document.querySelectorAll("[data-job-list]").forEach(function (list) {
      jobs.forEach(function (job) { takeJob(list, job); });
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-project-switcher]").forEach(function (form) {
      var select = form.querySelector("[data-autosubmit]");
      var button = form.querySelector("[data-switch-button]");
      if (!select) return;
      if (button) button.hidden = true;
      select.addEventListener("change", function () { form.submit(); });
    });
  });
})();
