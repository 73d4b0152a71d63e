// The built-in viewer (templates/imaging/_viewer.html). Every frame is a PNG
// rendered by Orthanc under the window shown, passed through ghimaging; the
// browser keeps them (private cache, ETag). No other script is needed.
(function () {
  "use strict";

  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function round(v) { return Math.round(v * 100) / 100; }
  // Every sentence the viewer says comes translated from the page
  // (templates/imaging/_viewer.html, data-viewer-text); %(name)s is filled in here.
  function texts(root) {
    var el = root.querySelector("script[data-viewer-text]");
    var all = el ? JSON.parse(el.textContent) : {};
    return function (key, values) {
      var s = all[key] || key;
      return s.replace(/%\((\w+)\)s/g, function (m, k) { return values && k in values ? values[k] : m; });
    };
  }

  function Viewer(root) {
    var q = function (sel) { return root.querySelector(sel); };
    this.root = root;
    this.t = texts(root);
    this.select = q("[data-series]");
    this.stage = q("[data-stage]");
    this.img = q("[data-image]");
    this.msg = q("[data-message]");
    this.counter = q("[data-counter]");
    this.wl = q("[data-wl]");
    this.slider = q("[data-slider]");
    this.presets = q("[data-presets]");
    this.keyStatus = q("[data-key-status]");
    this.keyList = q("[data-key-list]");
    this.caption = q("[data-caption]");
    this.frames = [];   // [[instance id, frame number]] in order
    this.index = 0;
    this.window = null; // [center, width] or null (colour image)
    this.series = null;
    this.mode = "scroll";
    this.zoom = 1; this.panX = 0; this.panY = 0;
    this.loading = false; this.wanted = null; this.shownUrl = null;
    this.seq = 0;       // bumped by open(): answers and frames of an older pick are dropped
    this.shown = null;  // what the screen holds: {series, instance, frame, window, index}
    this.addButton = q("[data-add-key]");
    this.bind();
    if (this.select) {
      var first = Array.prototype.find.call(this.select.options, function (o) { return !o.disabled; });
      if (first) { this.select.value = first.value; this.open(first.value); }
      else this.say(this.t("no_images"));
    }
  }

  Viewer.prototype.say = function (text) {
    this.msg.textContent = text || "";
    this.msg.hidden = !text;
  };

  // A new pick: nothing of the previous series may be stored as a key image
  // from now on, and a slow answer of an earlier pick is dropped (seq).
  Viewer.prototype.open = function (url) {
    var self = this, seq = ++self.seq;
    self.say("");
    self.counter.textContent = self.t("loading");
    self.shown = null; self.wanted = null;
    self.keyReady();
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (body) { return [r, body]; }); })
      .then(function (pair) {
        if (seq !== self.seq) return; // the user picked another series meanwhile
        var r = pair[0], body = pair[1];
        if (!r.ok) { self.counter.textContent = ""; self.say(body.message || self.t("cannot_show")); return; }
        self.series = body;
        self.frames = [];
        body.instances.forEach(function (it) {
          for (var f = 0; f < it.frames; f++) self.frames.push([it.id, f]);
        });
        self.word = self.frames.length > body.instances.length ? "frame_of" : "image_of";
        self.window = body.window ? body.window.slice() : null;
        self.index = 0;
        self.slider.max = Math.max(1, self.frames.length);
        self.slider.value = 1;
        self.buildPresets(body);
        self.fit();
        if (!self.frames.length) { self.counter.textContent = ""; self.say(self.t("series_empty")); return; }
        self.show();
      })
      .catch(function () {
        if (seq !== self.seq) return;
        self.counter.textContent = ""; self.say(self.t("no_answer"));
      });
  };

  // The key image button works only while a frame of the picked series is on
  // the screen (and no key image is being added).
  Viewer.prototype.keyReady = function () {
    if (this.addButton) this.addButton.disabled = !this.shown || this.adding === true;
  };

  Viewer.prototype.buildPresets = function (body) {
    var self = this;
    self.presets.textContent = "";
    if (!body.window) return; // a colour image has no window
    var list = [{ label: self.t("default"), center: body.window[0], width: body.window[1] }].concat(body.presets);
    list.forEach(function (p) {
      var b = document.createElement("button");
      b.type = "button"; b.className = "button small"; b.textContent = p.label;
      b.title = self.t("preset_title", { width: round(p.width), level: round(p.center) });
      b.setAttribute("data-center", p.center); b.setAttribute("data-width", p.width);
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () { self.setWindow(p.center, p.width); });
      self.presets.appendChild(b);
    });
  };

  Viewer.prototype.url = function () {
    var fr = this.frames[this.index];
    var u = this.series.base + fr[0] + "/frames/" + fr[1];
    if (this.window) u += "?c=" + round(this.window[0]) + "&w=" + round(this.window[1]);
    return u;
  };

  // One image loads at a time; a change made meanwhile loads once it is done
  // (scrolling fast skips the frames in between instead of queueing them).
  Viewer.prototype.show = function () {
    if (!this.frames.length) return;
    this.index = clamp(this.index, 0, this.frames.length - 1);
    this.slider.value = this.index + 1;
    this.counter.textContent = this.t(this.word, { n: this.index + 1, count: this.frames.length });
    this.wl.textContent = this.window ? this.t("window_level", { width: Math.round(this.window[1]), level: Math.round(this.window[0]) }) : "";
    var win = this.window;
    Array.prototype.forEach.call(this.presets.querySelectorAll("button"), function (b) {
      var on = !!win && +b.getAttribute("data-center") === win[0] && +b.getAttribute("data-width") === win[1];
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    var fr = this.frames[this.index];
    this.wanted = { url: this.url(), index: this.index, window: this.window ? this.window.slice() : null,
                    series: this.series.id, instance: fr[0], frame: fr[1], seq: this.seq };
    if (!this.loading) this.load();
  };

  Viewer.prototype.load = function () {
    var self = this, want = self.wanted;
    if (!want || want.url === self.shownUrl) { self.wanted = null; return; }
    self.wanted = null;
    self.loading = true;
    var probe = new Image();
    probe.onload = function () {
      self.loading = false;
      if (want.seq !== self.seq) { self.load(); return; } // a frame of the series left behind
      self.img.src = want.url;
      self.shownUrl = want.url;
      self.stage.setAttribute("data-series-id", String(want.series));
      self.stage.setAttribute("data-instance", want.instance);
      self.stage.setAttribute("data-frame", String(want.frame));
      self.stage.setAttribute("data-window", want.window ? want.window.join("/") : "");
      self.shown = want;
      self.keyReady();
      self.say("");
      self.load();
    };
    probe.onerror = function () {
      self.loading = false;
      if (want.seq !== self.seq) { self.load(); return; }
      fetch(want.url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (b) { self.say(b.message || self.t("image_cannot_show")); })
        .catch(function () { self.say(self.t("image_cannot_show_now")); })
        .then(function () { self.load(); });
    };
    probe.src = want.url;
  };

  Viewer.prototype.step = function (n) { this.index = clamp(this.index + n, 0, this.frames.length - 1); this.show(); };

  Viewer.prototype.setWindow = function (center, width) {
    if (!this.window) return;
    this.window = [center, Math.max(1, width)];
    this.show();
  };

  Viewer.prototype.fit = function () { this.zoom = 1; this.panX = 0; this.panY = 0; this.transform(); };

  Viewer.prototype.transform = function () {
    this.img.style.transform = "translate(" + this.panX + "px," + this.panY + "px) scale(" + this.zoom + ")";
  };

  Viewer.prototype.zoomBy = function (factor) { this.zoom = clamp(this.zoom * factor, 0.5, 8); this.transform(); };

  Viewer.prototype.setMode = function (mode) {
    this.mode = mode;
    Array.prototype.forEach.call(this.root.querySelectorAll("[data-mode]"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-mode") === mode ? "true" : "false");
    });
  };

  // A drag of dx, dy pixels since the last move, in the current mode.
  Viewer.prototype.drag = function (dx, dy, state) {
    if (this.mode === "pan") { this.panX += dx; this.panY += dy; this.transform(); return; }
    if (this.mode === "window" && this.window) {
      var k = Math.max(this.window[1], 1) / 200;
      this.setWindow(this.window[0] + dy * k, this.window[1] + dx * k);
      return;
    }
    state.acc = (state.acc || 0) + dy;
    var per = Math.max(6, this.stage.clientHeight / Math.max(20, this.frames.length));
    while (Math.abs(state.acc) >= per) { var s = state.acc > 0 ? 1 : -1; state.acc -= s * per; this.step(s); }
  };

  Viewer.prototype.bind = function () {
    var self = this;
    if (!self.stage) return;
    if (self.select) self.select.addEventListener("change", function () { self.open(self.select.value); });
    self.slider.addEventListener("input", function () { self.index = parseInt(self.slider.value, 10) - 1; self.show(); });
    self.stage.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      if (ev.ctrlKey) { self.zoomBy(ev.deltaY < 0 ? 1.1 : 1 / 1.1); return; }
      self.step(ev.deltaY > 0 ? 1 : -1);
    }, { passive: false });
    self.stage.addEventListener("keydown", function (ev) {
      var moves = { ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10 };
      if (moves[ev.key]) { ev.preventDefault(); self.step(moves[ev.key]); }
      else if (ev.key === "Home") { ev.preventDefault(); self.index = 0; self.show(); }
      else if (ev.key === "End") { ev.preventDefault(); self.index = self.frames.length - 1; self.show(); }
    });
    // Pointer events: a mouse drag or one finger follows the mode; two
    // fingers pinch to zoom and move to pan.
    var pointers = {}, state = {}, pinch = null;
    self.stage.addEventListener("pointerdown", function (ev) {
      self.stage.focus();
      pointers[ev.pointerId] = [ev.clientX, ev.clientY];
      if (self.stage.setPointerCapture) self.stage.setPointerCapture(ev.pointerId);
      state = {};
      pinch = null;
    });
    self.stage.addEventListener("pointermove", function (ev) {
      var last = pointers[ev.pointerId];
      if (!last) return;
      var ids = Object.keys(pointers);
      pointers[ev.pointerId] = [ev.clientX, ev.clientY];
      if (ids.length >= 2) {
        var a = pointers[ids[0]], b = pointers[ids[1]];
        var dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
        if (pinch) { self.zoomBy(dist / Math.max(1, pinch)); self.panX += (ev.clientX - last[0]) / 2; self.panY += (ev.clientY - last[1]) / 2; self.transform(); }
        pinch = dist;
        return;
      }
      self.drag(ev.clientX - last[0], ev.clientY - last[1], state);
    });
    var up = function (ev) { delete pointers[ev.pointerId]; pinch = null; };
    self.stage.addEventListener("pointerup", up);
    self.stage.addEventListener("pointercancel", up);
    Array.prototype.forEach.call(self.root.querySelectorAll("[data-mode]"), function (b) {
      b.addEventListener("click", function () { self.setMode(b.getAttribute("data-mode")); });
    });
    Array.prototype.forEach.call(self.root.querySelectorAll("[data-zoom]"), function (b) {
      b.addEventListener("click", function () {
        var z = b.getAttribute("data-zoom");
        if (z === "fit") self.fit(); else self.zoomBy(z === "in" ? 1.25 : 0.8);
      });
    });
    if (self.addButton) {
      var add = self.addButton;
      add.disabled = true; // until a frame is on the screen
      add.addEventListener("click", function () { self.addKey(add); });
    }
  };

  // "Add as key image": exactly the series, frame and window on the screen,
  // as recorded when that frame was displayed (never the current pick's
  // lists, which may already belong to another series).
  Viewer.prototype.addKey = function (button) {
    var self = this, shown = self.shown;
    if (!shown) { self.keyStatus.textContent = self.t("wait_image"); return; }
    var body = { series_id: shown.series, instance_id: shown.instance, frame: shown.frame,
                 center: shown.window ? shown.window[0] : null, width: shown.window ? shown.window[1] : null,
                 caption: self.caption ? self.caption.value : "" };
    self.adding = true;
    button.disabled = true;
    self.keyStatus.textContent = self.t("adding");
    fetch(self.root.getAttribute("data-key-url"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": self.root.getAttribute("data-csrf") },
      body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (pair) {
        var r = pair[0], b = pair[1];
        if (!r.ok) { self.keyStatus.textContent = b.message || self.t("key_not_added"); return; }
        self.keyStatus.textContent = self.t("key_added", { n: shown.index + 1 });
        if (self.caption) self.caption.value = "";
        var fig = document.createElement("figure"); fig.className = "thumb";
        var im = document.createElement("img"); im.src = b.thumb; im.alt = b.caption || self.t("key_image");
        var cap = document.createElement("figcaption"); cap.textContent = b.caption || "";
        fig.appendChild(im); fig.appendChild(cap); self.keyList.appendChild(fig);
        self.root.dispatchEvent(new CustomEvent("viewer:key-image", { detail: b, bubbles: true }));
      })
      .catch(function () { self.keyStatus.textContent = self.t("key_no_answer"); })
      .then(function () { self.adding = false; self.keyReady(); });
  };

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-viewer]"), function (root) {
      if (!root.viewer && root.querySelector("[data-stage]")) root.viewer = new Viewer(root);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
