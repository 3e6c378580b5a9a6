/* Image upload with a progress bar: XMLHttpRequest (fetch cannot report upload progress). */
(function () {
  "use strict";

  function mib(bytes) {
    return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
  }

  function csrfToken(form) {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    return window.CloudPanel ? window.CloudPanel.getCookie("csrftoken") || "" : "";
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-errors-for]").forEach(function (list) {
      list.innerHTML = "";
      list.hidden = true;
      var row = list.closest(".form-row");
      if (row) row.classList.remove("has-error");
    });
  }

  function showErrors(form, errors, box) {
    var general = [];
    Object.keys(errors || {}).forEach(function (field) {
      var messages = (errors[field] || []).map(function (e) { return e.message || e; });
      var list = form.querySelector('[data-errors-for="' + field + '"]');
      if (!list) {
        general = general.concat(messages);
        return;
      }
      messages.forEach(function (text) {
        var li = document.createElement("li");
        li.textContent = text;
        list.appendChild(li);
      });
      list.hidden = false;
      var row = list.closest(".form-row");
      if (row) row.classList.add("has-error");
    });
    if (general.length) {
      box.textContent = general.join(" ");
      box.hidden = false;
    }
  }

  function setup(form) {
    var panel = form.querySelector("[data-upload-progress]");
    var bar = form.querySelector("[data-upload-bar]");
    var percent = form.querySelector("[data-upload-percent]");
    var status = form.querySelector("[data-upload-status]");
    var errorBox = form.querySelector("[data-upload-error]");
    var submit = form.querySelector("[data-upload-submit]");
    var cancel = form.querySelector("[data-upload-cancel]");
    var xhr = null;

    function progress(pct, text) {
      bar.style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(pct));
      percent.textContent = pct + "%";
      status.textContent = text;
    }

    function done() {
      xhr = null;
      submit.disabled = false;
      cancel.hidden = true;
    }

    cancel.addEventListener("click", function () {
      if (xhr) xhr.abort();
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (xhr) return;
      clearErrors(form);
      errorBox.hidden = true;
      var fileInput = form.querySelector("input[type=file]");
      if (!fileInput.files.length) {
        showErrors(form, { file: ["Choose a file to upload."] }, errorBox);
        return;
      }
      var data = new FormData(form);
      xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";

      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) {
          progress(0, "Uploading: " + mib(e.loaded));
          return;
        }
        var pct = Math.floor((100 * e.loaded) / e.total);
        progress(pct, "Uploading: " + mib(e.loaded) + " of " + mib(e.total));
      };
      xhr.upload.onload = function () {
        progress(100, "Uploaded; verifying the checksum and inspecting the image…");
      };
      xhr.onload = function () {
        var body = xhr.response || {};
        if (xhr.status === 201 && body.url) {
          status.textContent = "Done.";
          window.location.assign(body.url);
          return;
        }
        done();
        panel.hidden = true;
        if (body.errors) {
          showErrors(form, body.errors, errorBox);
        } else {
          errorBox.textContent = "The upload failed (HTTP " + xhr.status + ").";
          errorBox.hidden = false;
        }
      };
      xhr.onerror = function () {
        done();
        errorBox.textContent = "The upload failed: the connection was lost.";
        errorBox.hidden = false;
      };
      xhr.onabort = function () {
        done();
        panel.hidden = true;
        errorBox.textContent = "Upload cancelled.";
        errorBox.hidden = false;
      };

      panel.hidden = false;
      submit.disabled = true;
      cancel.hidden = false;
      progress(0, "Starting upload…");
      xhr.send(data);
    });
  }

  /* On an image's page, reload when one of its jobs ends (import done, copy made). */
  document.addEventListener("cloudpanel:job", function (event) {
    var holder = document.querySelector("[data-image-detail]");
    var job = event.detail.job;
    if (!holder || !job.target || job.target.type !== "image") return;
    if (String(job.target.id) !== holder.getAttribute("data-image-detail")) return;
    if (["succeeded", "failed", "cancelled"].indexOf(job.status) !== -1) {
      window.setTimeout(function () { window.location.reload(); }, 800);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-image-upload]").forEach(setup);
  });
})();
