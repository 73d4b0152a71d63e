// The reporting desk: report templates inserted at the cursor, and the
// report kept as a draft while it is typed (a few seconds after the last
// key, and when the page is left). The page works without this script: the
// form saves the result either way.
(function () {
  "use strict";
  var form = document.getElementById("desk-form");
  if (!form) return;
  var report = form.querySelector("textarea[name=report]");
  var url = form.getAttribute("data-draft-url");
  var token = form.querySelector("input[name=csrf_token]").value;
  var status = form.querySelector("[data-autosave-status]");
  // The saved report's version this page was opened on: the server keeps no
  // draft typed over an older one (someone saved the report since).
  var versionInput = form.querySelector("input[name=version]");
  var version = versionInput ? versionInput.value : "";
  var stopped = false;
  var DELAY = 2000;
  var timer = null;
  var sent = report ? report.value : "";
  var submitting = false;

  function say(text) { if (status) status.textContent = text; }
  // Sentences come translated from the form (data-text-*); %(name)s is filled in here.
  function tr(key, values) {
    var s = form.getAttribute("data-text-" + key) || "";
    return s.replace(/%\((\w+)\)s/g, function (m, k) { return values && k in values ? values[k] : m; });
  }

  function save(keepalive) {
    if (!report || submitting || stopped) return;
    var text = report.value;
    if (text === sent) return;
    sent = text;
    var body = JSON.stringify({ text: text, version: version });
    fetch(url, {
      method: "POST", credentials: "same-origin", keepalive: !!keepalive && body.length < 60000,
      headers: { "Content-Type": "application/json", "X-CSRFToken": token, "Accept": "application/json" },
      body: body
    }).then(function (resp) {
      return resp.json().then(function (data) {
        if (resp.status === 409) { stopped = true; say(data.message || tr("stale")); return; }
        if (!resp.ok) { sent = null; say(tr("failed", { reason: data.message || resp.status })); return; }
        var at = new Date();
        say(data.saved ? tr("kept", { time: at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) })
                       : tr("empty"));
        form.setAttribute("data-draft-saved", data.saved ? "1" : "0");
      });
    }).catch(function () { sent = null; say(tr("offline")); });
  }

  if (report) {
    report.addEventListener("input", function () {
      say(tr("typing"));
      if (timer) clearTimeout(timer);
      timer = setTimeout(function () { timer = null; save(false); }, DELAY);
    });
    window.addEventListener("pagehide", function () { save(true); });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") save(true);
    });
  }

  form.addEventListener("submit", function (ev) {
    var button = ev.submitter;
    var msg = button && button.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { ev.preventDefault(); return; }
    submitting = true;  // the result is being saved: no draft now
    if (timer) clearTimeout(timer);
  });

  // Discard a restored (or an older) draft: forget it on the server, show
  // the saved text.
  var discard = document.querySelector("[data-discard-draft]");
  if (discard) {
    discard.addEventListener("click", function () {
      fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token, "Accept": "application/json" },
        body: JSON.stringify({ text: "", version: version })
      }).then(function (resp) {
        if (!resp.ok) return;
        // An older draft beside the saved report: only its notice goes (the
        // editor may hold text typed on a refused save; no reload loses it).
        var notice = discard.closest("[data-stale-draft]");
        if (notice) { notice.remove(); return; }
        submitting = true; window.location.reload();
      });
    });
  }

  // Templates: the chosen text goes where the cursor is (or replaces the
  // selection), on a line of its own, and the cursor ends after it.
  var pick = document.querySelector("[data-template-pick]");
  var insert = document.querySelector("[data-template-insert]");
  var lastStart = null, lastEnd = null;
  if (report) {
    ["keyup", "click", "select", "blur"].forEach(function (name) {
      report.addEventListener(name, function () { lastStart = report.selectionStart; lastEnd = report.selectionEnd; });
    });
  }
  function insertTemplate() {
    if (!pick || !pick.value || !report) return;
    var tpl = document.getElementById("report-template-" + pick.value);
    if (!tpl) return;
    var text = tpl.content ? tpl.content.textContent : tpl.textContent;
    var value = report.value;
    var start = lastStart === null ? value.length : lastStart;
    var end = lastEnd === null ? start : lastEnd;
    var before = value.slice(0, start), after = value.slice(end);
    if (before && !/\n$/.test(before)) text = "\n" + text;
    if (after && !/^\n/.test(after)) text = text + "\n";
    report.value = before + text + after;
    var caret = before.length + text.length;
    report.focus();
    report.setSelectionRange(caret, caret);
    lastStart = lastEnd = caret;
    pick.value = "";
    report.dispatchEvent(new Event("input", { bubbles: true }));
  }
  if (insert) insert.addEventListener("click", insertTemplate);
})();
