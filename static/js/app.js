// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("[data-print]")) window.print();
    if (t.matches && t.matches("[data-toggle-nav]")) {
      var nav = document.getElementById(t.getAttribute("aria-controls"));
      var open = nav.classList.toggle("open");
      t.setAttribute("aria-expanded", open ? "true" : "false");
    }
  });
  // Escape folds an open menu (at tablet width) and gives focus back to its button.
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    var btn = document.querySelector("[data-toggle-nav][aria-expanded=true]");
    if (!btn) return;
    document.getElementById(btn.getAttribute("aria-controls")).classList.remove("open");
    btn.setAttribute("aria-expanded", "false");
    btn.focus();
  });

  // A preview Orthanc cannot draw (an undecodable or non-image instance) is
  // replaced by a placeholder that says so, instead of a broken image. Its
  // words come translated from the page: data-no-preview and
  // data-no-preview-why on the image, else on <body>.
  function said(el, name) {
    return el.getAttribute(name) || document.body.getAttribute(name) || "";
  }
  function noPreview(img) {
    if (!img.parentNode) return;
    var box = document.createElement("div");
    box.className = "noimg placeholder";
    var title = document.createElement("strong");
    title.textContent = said(img, "data-no-preview");
    var why = document.createElement("span");
    why.textContent = said(img, "data-no-preview-why");
    box.appendChild(title);
    box.appendChild(why);
    img.parentNode.replaceChild(box, img);
  }
  document.addEventListener("error", function (ev) {
    var t = ev.target;
    if (t && t.tagName === "IMG" && t.hasAttribute("data-preview")) noPreview(t);
  }, true);
  Array.prototype.forEach.call(document.querySelectorAll("img[data-preview]"), function (img) {
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) noPreview(img);  // failed before this ran
  });

  // Patient picker: suggestions as you type, the PUID goes into the field.
  // The line under the field names a patient only while the field holds
  // exactly that patient's PUID (an exact match, "P-1" is not "P-10"), and
  // only from an answer to what the field still says: anything else shows
  // the neutral hint and no alerts, never the patient shown before.
  var input = document.querySelector("input[data-lookup]");
  if (!input) return;
  var list = document.getElementById(input.getAttribute("list"));
  var picked = document.getElementById("patient-picked");
  var timer = null, last = "", byPuid = {}, seq = 0;
  var alertBox = document.getElementById("patient-alerts");
  var hint = picked ? (picked.getAttribute("data-hint") || picked.textContent) : "";
  // "{name} · born {born} · {sex}", translated by the page.
  var pickedText = picked ? (picked.getAttribute("data-picked") || "{name} · {born} · {sex}") : "";
  // The picked patient's alerts and allergies, one per line, in red; none
  // shown while the box names nobody we know (never another patient's).
  function showAlerts(lines) {
    if (!alertBox) return;
    var ul = alertBox.querySelector("ul");
    ul.innerHTML = "";
    (lines || []).forEach(function (a) {
      var li = document.createElement("li");
      li.textContent = a;
      ul.appendChild(li);
    });
    alertBox.hidden = !(lines && lines.length);
  }
  function show(p) {
    if (picked) {
      picked.textContent = pickedText.replace("{name}", p.name).replace("{born}", p.born || p.birth_date || "—")
        .replace("{sex}", p.sex);
    }
    showAlerts(p.alerts);
  }
  function showNobody() {
    if (picked) picked.textContent = hint;
    showAlerts([]);
  }
  // Enter in the box never sends the order (a half-typed name would be
  // ordered for nobody, or for a guess): it puts the only suggestion's PUID
  // in the box, or does nothing. Picking from the open list with the
  // arrow keys and Enter is the browser's own and still works.
  var rows = [];
  input.addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter" || ev.isComposing) return;
    ev.preventDefault();
    var q = input.value.trim();
    if (byPuid[q]) return;  // already names a patient
    if (rows.length === 1 && last === q) {
      input.value = rows[0].puid;
      seq++;
      show(rows[0]);
    }
  });
  input.addEventListener("input", function () {
    var q = input.value.trim();
    clearTimeout(timer);
    if (byPuid[q]) { seq++; show(byPuid[q]); return; }  // seq++: no older answer may replace it
    showNobody();
    if (!q || q === last) return;
    list.innerHTML = "";  // no stale suggestions while the new ones load
    rows = [];
    timer = setTimeout(function () {
      last = q;
      var mine = ++seq;
      fetch(input.getAttribute("data-lookup") + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (answer) {
          answer.forEach(function (p) { byPuid[p.puid] = p; });
          if (mine !== seq || input.value.trim() !== q) {  // an older answer arriving late
            if (last === q) last = "";  // typing q again asks again
            return;
          }
          rows = answer;
          list.innerHTML = "";
          rows.forEach(function (p) {
            var o = document.createElement("option");
            o.value = p.puid;
            o.label = p.name + " · " + (p.born || p.birth_date || "—");
            o.textContent = p.name + " · " + (p.born || p.birth_date || "—");
            list.appendChild(o);
          });
          var exact = answer.find(function (p) { return p.puid === q; });
          if (exact) show(exact);
        });
    }, 180);
  });
})();
