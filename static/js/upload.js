// Upload with a real progress bar; the page works without this script too.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var files = [], zone = document.getElementById("dropzone");
  var chosen = document.getElementById("chosen"), bar = document.getElementById("progress-bar");
  var text = document.getElementById("progress-text"), box = document.getElementById("progress");
  var result = document.getElementById("upload-result"), button = document.getElementById("upload-button");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10), maxLabel = form.getAttribute("data-max-label");
  var maxFiles = parseInt(form.getAttribute("data-max-files"), 10);
  // Every sentence comes translated from the page (templates/uploads/upload.html,
  // data-upload-text); %(name)s is filled in here.
  var words = JSON.parse((document.querySelector("script[data-upload-text]") || {}).textContent || "{}");
  function tx(key, values) {
    var s = words[key] || key;
    return s.replace(/%\((\w+)\)s/g, function (m, k) { return values && k in values ? values[k] : m; });
  }

  function size(n) { return n >= 1048576 ? tx("mb", { n: (n / 1048576).toFixed(1) }) : tx("kb", { n: Math.ceil(n / 1024) }); }
  function total() { return files.reduce(function (a, f) { return a + f.file.size; }, 0); }
  function show() { chosen.textContent = files.length ? tx("chosen", { count: files.length, size: size(total()) }) : ""; }
  function add(list) {
    for (var i = 0; i < list.length; i++) files.push({ file: list[i], name: list[i].webkitRelativePath || list[i].name });
    show();
  }
  document.getElementById("files").addEventListener("change", function (e) { add(e.target.files); });
  document.getElementById("folder").addEventListener("change", function (e) { add(e.target.files); });

  function readEntry(entry, path, out) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (f) { out.push({ file: f, name: path + f.name }); resolve(); }, function () { resolve(); });
      } else if (entry.isDirectory) {
        var reader = entry.createReader(), all = [];
        (function more() {
          reader.readEntries(function (batch) {
            if (!batch.length) {
              Promise.all(all.map(function (e) { return readEntry(e, path + entry.name + "/", out); })).then(resolve);
            } else { all = all.concat(Array.prototype.slice.call(batch)); more(); }
          }, function () { resolve(); });
        })();
      } else resolve();
    });
  }
  ["dragenter", "dragover"].forEach(function (t) {
    zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault(); zone.classList.remove("over");
    var items = e.dataTransfer.items, out = [], jobs = [];
    if (items && items.length && items[0].webkitGetAsEntry) {
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].webkitGetAsEntry();
        if (entry) jobs.push(readEntry(entry, "", out));
        else { var f = items[i].getAsFile && items[i].getAsFile(); if (f) out.push({ file: f, name: f.name }); }
      }
      Promise.all(jobs).then(function () { files = files.concat(out); show(); });
    } else add(e.dataTransfer.files);
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!files.length) { chosen.textContent = tx("choose_first"); return; }
    if (total() > maxBytes) { chosen.textContent = tx("too_large", { size: size(total()), limit: maxLabel }); return; }
    if (files.length > maxFiles) { chosen.textContent = tx("too_many", { count: files.length, limit: maxFiles }); return; }
    var data = new FormData();
    ["csrf_token", "server_id", "request_id"].forEach(function (n) { data.append(n, form.elements[n].value); });
    files.forEach(function (f) { data.append("files", f.file, f.name); });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    box.hidden = false; button.disabled = true; bar.value = 0; result.innerHTML = "";
    xhr.upload.onprogress = function (ev) {
      if (!ev.lengthComputable) return;
      var pct = Math.round(ev.loaded * 100 / ev.total);
      bar.value = pct;
      text.textContent = tx("sending", { done: size(ev.loaded), total: size(ev.total), pct: pct });
    };
    xhr.upload.onload = function () { bar.value = 100; text.textContent = tx("sent"); };
    xhr.onerror = function () { button.disabled = false; text.textContent = tx("connection_failed"); };
    xhr.onload = function () {
      button.disabled = false;
      var body; try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status !== 200 || !body || !body.outcomes) {
        text.textContent = (body && body.message) || tx("failed_http", { status: xhr.status });
        return;
      }
      text.textContent = tx("done");
      files = []; show();
      render(body);
    };
    xhr.send(data);
  });

  function el(tag, cls, txt) { var e = document.createElement(tag); if (cls) e.className = cls; if (txt !== undefined) e.textContent = txt; return e; }
  function render(body) {
    var labels = { stored: tx("stored"), already: tx("already"), rejected: tx("rejected"), failed: tx("failed") };
    var sec = el("section", "card flush upload-report");
    var c = body.counts;
    sec.appendChild(el("h2", "pad", tx("result", { stored: c.stored, already: c.already, rejected: c.rejected, failed: c.failed })));
    if (body.aborted) sec.appendChild(el("div", "flash flash-error", body.aborted));
    if (body.study_links && body.study_links.length) {
      var p = el("p", "pad"); p.appendChild(document.createTextNode(tx("studies") + " "));
      body.study_links.forEach(function (s, i) { var a = el("a", "", s.label); a.href = s.url; p.appendChild(a); if (i < body.study_links.length - 1) p.appendChild(document.createTextNode(", ")); });
      sec.appendChild(p);
    }
    var t = el("table", "table compact"), tb = el("tbody");
    var head = el("thead"), hr = el("tr"); [tx("file"), tx("outcome"), tx("detail")].forEach(function (h) { hr.appendChild(el("th", "", h)); }); head.appendChild(hr); t.appendChild(head);
    body.outcomes.forEach(function (o) {
      var tr = el("tr", "outcome-" + o.status);
      tr.appendChild(el("td", "", o.name));
      var td = el("td"); td.appendChild(el("span", "badge outcome " + o.status, labels[o.status] || o.status)); tr.appendChild(td);
      tr.appendChild(el("td", "", o.detail));
      tb.appendChild(tr);
    });
    t.appendChild(tb); sec.appendChild(t); result.appendChild(sec);
  }
})();
