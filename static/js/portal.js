/* The portal: the project switcher follows its select (the button stays for no-script). */
(function () {
  "use strict";
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
