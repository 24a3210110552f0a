// needleplan practice: the page. Plain JavaScript, no framework, no build step, nothing loaded from elsewhere.
// Everything goes through the JSON API of docs/practice.md. Requests run one after another in a queue (so a shot
// always sees the pose and needle asked for before it), but the controls never wait for them.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const CARM_THROTTLE_MS = 300;   // slider drags send at most this often (every sent pose is an action in the log)
  const MAX_QUEUED = 12;          // refuse more waiting actions than this (a held key must not pile up minutes)
  const MAX_SHOTS_PENDING = 2;    // the shot rendering plus at most one more

  // Needle angle terms (DESIGN.md): a needle's oblique_deg / tilt_deg are the C-arm angles that see it as a dot.
  // oblique > 0 turns the detector toward the patient's left, so the beam (detector to source) runs to the right:
  // raising a needle's oblique swings its tip toward the patient's right. tilt > 0 moves the detector toward the
  // feet, the beam runs cephalad: raising a needle's tilt swings its tip cephalad.
  const TILT_FOR_TIP_CEPHALAD = +1;
  const obliqueForTipMedial = () => (sideOfTask() === "right" ? -1 : +1);

  const app = {
    mode: "practice",
    task: null,
    session: null,          // session id
    state: null,            // last session state from the server
    stateAt: 0,             // performance.now() when `state` arrived
    lastShot: null,         // the shot on the monitor
    finished: false,
    finishing: false,
    shotsPending: 0,
    pickMode: false,
    want: { oblique: 0, tilt: 0, collimator: null },   // the pose the controls ask for
    carmVersion: 0,
    errors: [],             // every error shown, for the tests: {status, message, when}
    review: null,
    reviewIndex: 0,
  };
  window.practice = app;    // for debugging and the browser test

  // ------------------------------------------------------------------ formatting

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  // fixed digits, without a "-0.0"
  const fmt = (x, digits = 1) => (isNum(x) ? (Math.abs(x) < 0.5 * 10 ** -digits ? 0 : x).toFixed(digits) : "\u2014");
  const fmtDeg = (x, digits = 1) => (isNum(x) ? `${fmt(x, digits)}\u00b0` : "\u2014");
  const signed = (x, digits = 0) => (isNum(x) ? (x > 0 ? "+" : x < 0 ? "\u2212" : "") + Math.abs(x).toFixed(digits) : "\u2014");
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function fmtTime(seconds) {
    if (!isNum(seconds)) return "\u2014";
    const s = Math.max(0, Math.floor(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function fmtPoints(x) {
    if (!isNum(x)) return "\u2014";
    return Number.isInteger(x) ? String(x) : x.toFixed(1);
  }

  function compact(value) {
    if (value === null || value === undefined) return "\u2014";
    if (isNum(value)) return Number.isInteger(value) ? String(value) : value.toFixed(1);
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "string") return value;
    if (Array.isArray(value)) return value.length ? value.map(compact).join(", ") : "none";
    if (typeof value === "object") {
      return Object.entries(value).map(([k, v]) => `${k.replace(/_/g, " ")} ${compact(v)}`).join(", ");
    }
    return String(value);
  }

  function obliqueWords(deg) {
    if (!isNum(deg) || Math.abs(deg) < 0.05) return "AP";
    const side = deg > 0 ? "left" : "right";
    const ipsi = sideOfTask() ? (side === sideOfTask() ? " (ipsilateral)" : " (contralateral)") : "";
    return `${Math.abs(deg).toFixed(Math.abs(deg) % 1 ? 1 : 0)}\u00b0 ${side}${ipsi}`;
  }

  function tiltWords(deg) {
    if (!isNum(deg) || Math.abs(deg) < 0.05) return "no tilt";
    return `${Math.abs(deg).toFixed(Math.abs(deg) % 1 ? 1 : 0)}\u00b0 ${deg > 0 ? "caudal" : "cranial"}`;
  }

  function sideOfTask() {
    const side = app.task && typeof app.task.side === "string" ? app.task.side.toLowerCase() : "";
    return side === "left" || side === "right" ? side : "";
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // ------------------------------------------------------------------ status and errors

  function setStatus(text, kind = "") {
    const status = $("status");
    status.textContent = text || "";
    status.className = kind;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function showError(err, doing) {
    const status = err && isNum(err.status) ? err.status : null;
    const message = err && err.message ? err.message : String(err);
    const where = doing ? ` (${doing})` : "";
    const text = (status ? `Error ${status}${where}: ` : `Error${where}: `) + message;
    app.errors.push({ status, message, doing: doing || "", when: new Date().toISOString() });
    $("error-text").textContent = text;
    $("error").hidden = false;
    console.error(text);
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  // ------------------------------------------------------------------ the API

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(null, `the practice server did not answer (${exc.message}); is \`needleplan practice\` still running?`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (exc) { data = null; }
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      if (data && typeof data.error === "string") message = data.error;
      else if (data && data.detail !== undefined) message = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      else if (text) message = text.slice(0, 300);
      throw new ApiError(response.status, message);
    }
    if (data === null || typeof data !== "object") throw new ApiError(response.status, `the answer to ${method} ${path} was not JSON`);
    return data;
  }

  const sessionPath = (suffix = "") => `/api/sessions/${encodeURIComponent(app.session)}${suffix}`;

  // ------------------------------------------------------------------ the request queue

  let token = 0;            // changes with every new session: queued work of an old session is dropped
  const queue = [];
  let busy = false;

  function enqueue(kind, run, doing) {
    const task = { kind, run, doing, token };
    queue.push(task);
    updateBusy();
    pump();
    return task;
  }

  async function pump() {
    if (busy) return;
    busy = true;
    updateBusy();
    while (queue.length) {
      const task = queue.shift();
      if (task.token !== token) continue;
      try {
        await task.run(task.token);
      } catch (exc) {
        if (task.token === token) {
          showError(exc, task.doing);
          setStatus(`Could not ${task.doing || "do that"}: see the error above.`, "event-full");
        }
      }
    }
    busy = false;
    updateBusy();
  }

  function idle() {
    return !busy && queue.length === 0 && carmTimer === null;
  }
  app.idle = idle;

  function updateBusy() {
    $("pending-badge").hidden = app.shotsPending === 0;
    $("pending-badge").textContent = app.shotsPending > 1 ? "rendering\u2026 (+1 queued)" : "rendering\u2026";
    document.body.classList.toggle("busy", busy || queue.length > 0);
  }

  function canAct(quiet) {
    if (app.mode !== "practice") return false;
    if (!app.session) {
      if (!quiet) setStatus("No session yet: wait for it to start (or reload the page).", "info");
      return false;
    }
    if (app.finished || app.finishing) {
      if (!quiet) setStatus("This attempt is finished: press New attempt to start another.", "info");
      return false;
    }
    return true;
  }

  function roomInQueue() {
    if (queue.length >= MAX_QUEUED) {
      setStatus(`${queue.length} actions are still waiting for the server; wait a moment.`, "event-bone");
      return false;
    }
    return true;
  }

  // ------------------------------------------------------------------ task and session

  async function init() {
    wireControls();
    setInterval(tickClock, 500);
    try {
      app.task = await api("GET", "/api/task");
    } catch (exc) {
      showError(exc, "loading the task");
      setStatus("The task could not be loaded; reload the page once the server runs.", "event-full");
      return;
    }
    showTask();
    if (app.task.mode === "review") {
      startReview();
    } else {
      newSession();
    }
  }

  function showTask() {
    const t = app.task;
    $("task-title").textContent = t.in_words || [t.side, t.level, t.procedure_name || t.procedure].filter(Boolean).join(" ") || "Practice";
    $("task-target").textContent = t.target_in_words || "";
    const needle = t.needle || {};
    const parts = [];
    if (needle.gauge !== undefined) parts.push(`${needle.gauge} G`);
    if (isNum(needle.length_mm)) parts.push(`${fmt(needle.length_mm, 0)} mm needle`);
    $("task-needle").textContent = parts.join(", ");
    $("task-levels").textContent = t.levels ? t.levels.in_words : "";
    $("task-case").textContent = t.case ? `case ${t.case}${t.mode === "review" ? " \u00b7 review" : ""}` : "";
    document.title = `${t.in_words || "needleplan"} \u2014 practice`;
    applyLimits(t.limits || {});
    const presets = t.presets || {};
    for (const name of ["ap", "lateral", "oblique"]) {
      const p = presets[name];
      if (p) $(`preset-${name}`).title = `${name} preset: oblique ${fmtDeg(p.oblique_deg, 0)}, tilt ${fmtDeg(p.tilt_deg, 0)} (${name[0].toUpperCase()})`;
    }
    labelRedirects();
  }

  function setRange(ids, range) {
    if (!Array.isArray(range) || range.length !== 2 || !isNum(range[0]) || !isNum(range[1])) return;
    for (const id of ids) {
      $(id).min = range[0];
      $(id).max = range[1];
    }
  }

  function applyLimits(limits) {
    app.limits = limits;
    setRange(["oblique", "oblique-num", "aim-oblique"], limits.oblique_deg);
    setRange(["tilt", "tilt-num"], limits.tilt_deg);
    setRange(["aim-tilt"], limits.needle_tilt_deg || limits.tilt_deg);
    setRange(["collimator", "collimator-num"], limits.collimator_mm);
    setRange(["step-mm"], limits.step_mm);
    setRange(["left-mm", "cranial-mm"], limits.offset_mm);
    if (Array.isArray(limits.redirect_deg)) $("redirect-deg").max = Math.max(...limits.redirect_deg.map(Math.abs));
    if (Array.isArray(limits.collimator_mm)) {
      const hi = limits.collimator_mm[1];
      $("collimator").value = hi;
      $("collimator-num").value = hi;
    }
  }

  function newSession() {
    token += 1;
    queue.length = 0;
    app.session = null;
    app.state = null;
    app.finished = false;
    app.finishing = false;
    app.shotsPending = 0;
    resetPracticeView();
    setStatus("Starting a session\u2026", "info");
    enqueue("session", async (tok) => {
      const state = await api("POST", "/api/sessions", {});
      if (tok !== token) return;
      app.session = state.id;
      $("session-id").textContent = state.id ? `session ${state.id}` : "";
      applyState(state, app.carmVersion);
      setStatus("Session started. Set the C-arm, take a shot (Space), pick the skin entry on the image.", "info");
    }, "start a session");
  }

  function resetPracticeView() {
    clearError();
    app.lastShot = null;
    const img = $("shot-image");
    img.removeAttribute("src");
    $("viewer").classList.add("empty");
    $("shot-label").textContent = "Shot \u2014";
    $("shot-pose").textContent = "\u2014";
    $("render-ms").textContent = "";
    $("shot-note").textContent = "";
    $("carm-moved").hidden = true;
    $("controls").hidden = false;
    $("results").hidden = true;
    $("shoot").disabled = false;
    $("finish").disabled = false;
    setPickMode(false);
    for (const id of ["reveal-image", "review-image"]) {
      $(id).removeAttribute("src");
      $(id).dataset.state = "";
    }
    app.monitor = "shot";
    $("viewer-tabs").hidden = true;
    updateMonitor();
    updateBusy();
  }

  function applyState(state, carmVersionAtSend) {
    if (!state || typeof state !== "object") return;
    app.state = state;
    app.stateAt = performance.now();
    if (isNum(state.shots)) $("shot-count").textContent = String(state.shots);
    if (isNum(state.dose_proxy_cm2)) $("dose").textContent = fmt(state.dose_proxy_cm2, 0);
    if (isNum(state.punctures)) $("punctures").textContent = String(state.punctures);
    tickClock();
    const carm = state.carm || {};
    $("carm-words").textContent = carm.in_words || `${obliqueWords(carm.oblique_deg)}, ${tiltWords(carm.tilt_deg)}`;
    $("field-area").textContent = isNum(carm.field_area_cm2) ? `field ${fmt(carm.field_area_cm2, 0)} cm\u00b2` : "";
    if (carmVersionAtSend !== undefined && carmVersionAtSend === app.carmVersion && carmTimer === null) syncCarmInputs(carm);
    showNeedle(state.needle);
    updateCarmMoved();
    if (state.finished === true && !app.finished) app.finished = true;
  }

  function showNeedle(needle) {
    const box = $("needle-state");
    box.textContent = "";
    if (!needle) {
      box.textContent = "No needle yet: pick the skin entry on a shot, or place it by offsets.";
      return;
    }
    const length = isNum(needle.length_mm) ? ` of ${fmt(needle.length_mm, 0)}` : "";
    box.append(
      el("div", {}, el("b", { text: `Depth ${fmt(needle.depth_mm)}${length} mm` }),
        `  \u00b7  seen as a dot at oblique ${fmtDeg(needle.oblique_deg)}, tilt ${fmtDeg(needle.tilt_deg)}`),
    );
    const contact = needle.bone_contact === true;
    box.append(el("div", {}, "Bone contact: ", el("span", { class: contact ? "bone" : "", text: contact ? "yes" : "no" })));
  }

  function tickClock() {
    if (!app.state || !isNum(app.state.elapsed_s)) return;
    let t = app.state.elapsed_s;
    if (!app.finished && app.mode === "practice") t += (performance.now() - app.stateAt) / 1000;
    $("elapsed").textContent = fmtTime(t);
  }

  // ------------------------------------------------------------------ C-arm

  let carmTimer = null;
  let carmLastSent = 0;

  function clampTo(x, range) {
    if (!Array.isArray(range) || range.length !== 2) return x;
    return Math.min(range[1], Math.max(range[0], x));
  }

  function syncCarmInputs(carm) {
    if (!carm) return;
    if (isNum(carm.oblique_deg)) app.want.oblique = carm.oblique_deg;
    if (isNum(carm.tilt_deg)) app.want.tilt = carm.tilt_deg;
    if (carm.collimator_mm === null || isNum(carm.collimator_mm)) app.want.collimator = isOpenField(carm.collimator_mm) ? null : carm.collimator_mm;
    showCarmInputs();
  }

  function showCarmInputs() {
    const w = app.want;
    $("oblique").value = w.oblique;
    $("tilt").value = w.tilt;
    if (document.activeElement !== $("oblique-num")) $("oblique-num").value = round1(w.oblique);
    if (document.activeElement !== $("tilt-num")) $("tilt-num").value = round1(w.tilt);
    $("oblique-words").textContent = obliqueWords(w.oblique);
    $("tilt-words").textContent = tiltWords(w.tilt);
    const open = w.collimator === null;
    $("collimator-open").checked = open;
    $("collimator").disabled = open;
    $("collimator-num").disabled = open;
    if (!open) {
      $("collimator").value = w.collimator;
      if (document.activeElement !== $("collimator-num")) $("collimator-num").value = round1(w.collimator);
    }
  }

  const round1 = (x) => Math.round(x * 10) / 10;

  // the open field: null, or (as the server also reports it) the largest diameter
  function isOpenField(mm) {
    const range = app.limits && app.limits.collimator_mm;
    return mm === null || mm === undefined || (Array.isArray(range) && isNum(mm) && mm >= range[1]);
  }

  // the pose changed in the controls; send it now or soon
  function carmChanged(now) {
    app.carmVersion += 1;
    showCarmInputs();
    if (!canAct(true)) return;
    if (now) {
      flushCarm();
      return;
    }
    if (carmTimer !== null) return;
    const wait = Math.max(0, CARM_THROTTLE_MS - (performance.now() - carmLastSent));
    carmTimer = setTimeout(flushCarm, wait);
  }

  function flushCarm() {
    if (carmTimer !== null) clearTimeout(carmTimer);
    carmTimer = null;
    carmLastSent = performance.now();
    if (!canAct(true)) return;
    const last = queue[queue.length - 1];
    if (last && last.kind === "carm" && last.token === token) return;   // it will send the latest pose
    enqueue("carm", async (tok) => {
      const version = app.carmVersion;
      const body = { oblique_deg: round1(app.want.oblique), tilt_deg: round1(app.want.tilt), collimator_mm: app.want.collimator };
      const state = await api("PUT", sessionPath("/carm"), body);
      if (tok !== token) return;
      applyState(state, version);
    }, "move the C-arm");
  }

  function flushPendingCarm() {
    if (carmTimer !== null) flushCarm();
  }

  function nudgeCarm(dOblique, dTilt) {
    if (!canAct()) return;
    const limits = app.limits || {};
    app.want.oblique = clampTo(round1(app.want.oblique + dOblique), limits.oblique_deg);
    app.want.tilt = clampTo(round1(app.want.tilt + dTilt), limits.tilt_deg);
    carmChanged(false);
  }

  function preset(name) {
    if (!canAct()) return;
    clearError();
    flushPendingCarm();
    app.carmVersion += 1;
    const version = app.carmVersion;
    enqueue("preset", async (tok) => {
      const state = await api("PUT", sessionPath("/carm"), { preset: name });
      if (tok !== token) return;
      applyState(state, version);
      setStatus(`C-arm: ${name} preset (${(state.carm && state.carm.in_words) || "moved"}).`, "info");
    }, `move the C-arm to the ${name} preset`);
  }

  function updateCarmMoved() {
    const shot = app.lastShot;
    const now = app.state && app.state.carm;
    if (!shot || !shot.carm || !now) {
      $("carm-moved").hidden = true;
      return;
    }
    const a = shot.carm;
    const moved = Math.abs((a.oblique_deg ?? 0) - (now.oblique_deg ?? 0)) > 0.05
      || Math.abs((a.tilt_deg ?? 0) - (now.tilt_deg ?? 0)) > 0.05
      || (isOpenField(a.collimator_mm) ? null : a.collimator_mm) !== (isOpenField(now.collimator_mm) ? null : now.collimator_mm)
      || Math.abs((a.pan_left_mm ?? 0) - (now.pan_left_mm ?? 0)) > 0.05
      || Math.abs((a.pan_cranial_mm ?? 0) - (now.pan_cranial_mm ?? 0)) > 0.05;
    $("carm-moved").hidden = !moved;
  }

  // ------------------------------------------------------------------ shots

  function shoot() {
    if (!canAct()) return;
    clearError();
    if (app.shotsPending >= MAX_SHOTS_PENDING) {
      setStatus("A shot is rendering and one more is queued; this press is ignored.", "event-bone");
      return;
    }
    flushPendingCarm();
    app.shotsPending += 1;
    updateBusy();
    enqueue("shot", async (tok) => {
      try {
        const answer = await api("POST", sessionPath("/shots"), {});
        if (tok !== token) return;
        showShot(answer.shot);
        applyState(answer.state);
      } finally {
        if (tok === token) {
          app.shotsPending = Math.max(0, app.shotsPending - 1);
          updateBusy();
        }
      }
    }, "take a shot");
  }

  function showShot(shot) {
    if (!shot || typeof shot.image_png !== "string") throw new ApiError(null, "the shot answer has no image");
    app.lastShot = shot;
    const img = $("shot-image");
    img.src = shot.image_png;
    $("viewer").classList.remove("empty");
    showShotCaption(shot);
    updateCarmMoved();
  }

  function showShotCaption(shot) {
    $("shot-label").textContent = `Shot ${shot.number ?? "?"}`;
    const carm = shot.carm || {};
    const words = carm.in_words || `${obliqueWords(carm.oblique_deg)}, ${tiltWords(carm.tilt_deg)}`;
    const coll = isNum(carm.collimator_mm) && !isOpenField(carm.collimator_mm) ? `, collimated to ${fmt(carm.collimator_mm, 0)} mm` : "";
    $("shot-pose").textContent = words + coll;
    $("render-ms").textContent = isNum(shot.render_ms) ? `rendered in ${fmt(shot.render_ms, 0)} ms` : "";
    $("shot-note").textContent = shot.informative === false ? "Nothing changed since the previous shot: this one taught nothing new." : "";
  }

  // ------------------------------------------------------------------ needle

  function setPickMode(on) {
    app.pickMode = Boolean(on);
    $("viewer").classList.toggle("picking", app.pickMode);
    $("pick-entry").classList.toggle("active", app.pickMode);
    $("pick-hint").hidden = !app.pickMode;
  }

  function readNumber(id, what, { required = true, fallback = 0 } = {}) {
    const input = $(id);
    const raw = input.value.trim();
    if (raw === "") {
      if (!required) return fallback;
      throw new ApiError(null, `type a number for ${what}`);
    }
    const value = Number(raw);
    if (!Number.isFinite(value)) throw new ApiError(null, `${what} must be a number, not "${raw}"`);
    return value;
  }

  function needleAction(body, doing) {
    if (!canAct() || !roomInQueue()) return;
    clearError();
    flushPendingCarm();
    enqueue("needle", async (tok) => {
      const answer = await api("POST", sessionPath("/needle"), body);
      if (tok !== token) return;
      applyState(answer.state);
      const event = answer.event || "";
      const message = answer.message || `${doing}: done.`;
      setStatus(message, event ? `event-${event}` : "");
    }, doing);
  }

  function withInputs(build, doing) {
    let body;
    try {
      body = build();
    } catch (exc) {
      showError(exc, doing);
      return;
    }
    needleAction(body, doing);
  }

  function placeOnImage(event) {
    if (!app.pickMode) return;
    if (!app.lastShot) {
      setStatus("Take a shot first, then click it where the needle should enter.", "info");
      return;
    }
    const img = $("shot-image");
    const size = app.lastShot.size || (app.task && app.task.image_size) || 512;
    const col = round1((event.offsetX * size) / img.clientWidth);
    const row = round1((event.offsetY * size) / img.clientHeight);
    setPickMode(false);
    needleAction({ action: "place", shot: app.lastShot.number, col, row }, `place the needle at column ${col}, row ${row} of shot ${app.lastShot.number}`);
  }

  function placeByOffsets() {
    withInputs(() => ({
      action: "place",
      left_mm: readNumber("left-mm", "the offset left of the midline (mm)"),
      cranial_mm: readNumber("cranial-mm", "the cranial offset (mm)", { required: false }),
    }), "place the needle by offsets");
  }

  function aimBeam() {
    needleAction({ action: "aim", along: "beam" }, "aim the needle down the beam");
  }

  function aimAngles() {
    withInputs(() => ({
      action: "aim",
      oblique_deg: readNumber("aim-oblique", "the aim's oblique angle"),
      tilt_deg: readNumber("aim-tilt", "the aim's tilt angle"),
    }), "aim the needle by angles");
  }

  function move(kind) {
    withInputs(() => ({ action: kind, mm: readNumber("step-mm", "the step (mm)") }), `${kind} the needle`);
  }

  function redirectStep() {
    const raw = Number($("redirect-deg").value);
    return Number.isFinite(raw) && raw > 0 ? raw : 1;
  }

  // direction: "cephalad" | "caudal" | "medial" | "lateral"; degrees: the amount (the keys use 1)
  function redirectBody(direction, degrees) {
    switch (direction) {
      case "cephalad": return { action: "redirect", oblique_deg: 0, tilt_deg: TILT_FOR_TIP_CEPHALAD * degrees };
      case "caudal": return { action: "redirect", oblique_deg: 0, tilt_deg: -TILT_FOR_TIP_CEPHALAD * degrees };
      case "medial": return { action: "redirect", oblique_deg: obliqueForTipMedial() * degrees, tilt_deg: 0 };
      default: return { action: "redirect", oblique_deg: -obliqueForTipMedial() * degrees, tilt_deg: 0 };
    }
  }

  function redirect(direction, degrees) {
    const body = redirectBody(direction, degrees);
    const terms = body.tilt_deg ? `tilt ${signed(body.tilt_deg, 1)}\u00b0` : `oblique ${signed(body.oblique_deg, 1)}\u00b0`;
    needleAction(body, `redirect the tip ${direction} (${terms})`);
  }

  function labelRedirects() {
    const d = redirectStep();
    const digits = Number.isInteger(d) ? 0 : 1;
    for (const direction of ["cephalad", "caudal", "medial", "lateral"]) {
      const body = redirectBody(direction, d);
      const terms = body.tilt_deg ? `tilt ${signed(body.tilt_deg, digits)}\u00b0` : `obl ${signed(body.oblique_deg, digits)}\u00b0`;
      const key = { cephalad: "I", caudal: "K", medial: "J", lateral: "U" }[direction];
      const button = $(`redirect-${direction}`);
      button.textContent = "";
      button.append(`tip ${direction} \u00b7 ${terms}`, el("kbd", { text: key }));
      button.title = `Turn the needle about its skin entry: ${terms} in needle angle terms, which swings the tip ${direction}` +
        ` (key ${key} always turns 1\u00b0)`;
    }
  }

  // ------------------------------------------------------------------ finish and score

  function finish() {
    if (!canAct()) return;
    clearError();
    flushPendingCarm();
    app.finishing = true;
    $("finish").disabled = true;
    setStatus("Finishing and scoring\u2026", "info");
    enqueue("finish", async (tok) => {
      let answer;
      try {
        answer = await api("POST", sessionPath("/finish"), {});
      } catch (exc) {
        app.finishing = false;
        $("finish").disabled = false;
        throw exc;
      }
      if (tok !== token) return;
      app.finished = true;
      app.finishing = false;
      setPickMode(false);
      applyState(answer.state);
      showScore(answer.score || {});
      showRevealPictures(answer.reveal || {});
      $("controls").hidden = true;
      $("results").hidden = false;
      $("shoot").disabled = true;
      $("finish").disabled = true;
      const points = answer.score && isNum(answer.score.points) ? `${fmtPoints(answer.score.points)} points` : "scored";
      setStatus(`Attempt finished: ${points}. New attempt starts another session.`, answer.score && answer.score.passed ? "" : "event-bone");
    }, "finish and score the attempt");
  }

  function showScore(score) {
    $("score-points").textContent = fmtPoints(score.points);
    const passed = $("score-passed");
    if (typeof score.passed === "boolean") {
      passed.textContent = score.passed ? "passed" : "not passed";
      passed.className = score.passed ? "passed" : "failed";
    } else {
      passed.textContent = "";
      passed.className = "";
    }
    $("score-grade").textContent = score.grade || "";
    const summary = $("score-summary");
    summary.textContent = "";
    const lines = Array.isArray(score.summary) ? score.summary : typeof score.summary === "string" ? [score.summary] : [];
    for (const line of lines) summary.append(el("li", { text: String(line) }));
    showParts(score);
  }

  const PARTS = [
    ["tip", "Tip"], ["angle", "Angle"], ["rfa", "RFA lesion"], ["safety", "Safety"], ["views", "Views"],
    ["radiation", "Radiation"], ["efficiency", "Efficiency"],
  ];

  function showParts(score) {
    const table = $("score-parts");
    table.textContent = "";
    table.append(el("tr", {}, el("th", { text: "Part" }), el("th", { text: "Points" }), el("th", { text: "Details" })));
    const known = new Set(PARTS.map(([k]) => k));
    const rows = PARTS.slice();
    for (const [key, value] of Object.entries(score)) {   // parts this page does not know yet
      if (!known.has(key) && value && typeof value === "object" && !Array.isArray(value) && ("points" in value)) rows.push([key, key]);
    }
    for (const [key, label] of rows) {
      const part = score[key];
      if ((part === null || part === undefined) && (key === "tip" || key === "angle") && "points" in score) {
        table.append(el("tr", {}, el("td", { class: "part", text: label }), el("td", { class: "pts", text: "\u2014" }),
          el("td", { class: "detail", text: "not scored: no needle in the patient" })));
        continue;
      }
      if (part === null || part === undefined || typeof part !== "object") continue;
      const points = isNum(part.points) ? `${fmtPoints(part.points)}${isNum(part.of) ? ` / ${fmtPoints(part.of)}` : ""}` : "";
      const detail = el("td", { class: "detail" });
      describePart(key, part, detail);
      table.append(el("tr", {}, el("td", { class: "part", text: label }), el("td", { class: "pts", text: points }), detail));
    }
  }

  function addText(cell, text, cls) {
    if (cell.childNodes.length) cell.append("; ");
    cell.append(cls ? el("span", { class: cls, text }) : text);
  }

  function listOf(items) {
    return items.map((x) => (x && typeof x === "object" ? x.name || x.structure || x.message || compact(x) : String(x))).join(", ");
  }

  function rest(part, skip) {
    const out = {};
    for (const [k, v] of Object.entries(part)) if (!skip.includes(k) && k !== "points" && k !== "of") out[k] = v;
    return out;
  }

  function describePart(key, p, cell) {
    switch (key) {
      case "tip": {
        addText(cell, `${fmt(p.error_mm)} mm from the target`);
        if (p.in_target === true) addText(cell, "inside the target region", "ok");
        else if (isNum(p.region_distance_mm)) addText(cell, `${fmt(p.region_distance_mm)} mm outside the region`, "bad");
        if (isNum(p.tolerance_mm)) addText(cell, `tolerance ${fmt(p.tolerance_mm)} mm`);
        if (typeof p.bone_contact === "boolean") addText(cell, `bone contact ${p.bone_contact ? "yes" : "no"}`);
        return;
      }
      case "angle": {
        addText(cell, `${fmtDeg(p.error_deg)} off the plan`);
        if (isNum(p.oblique_error_deg) || isNum(p.tilt_error_deg)) {
          addText(cell, `oblique ${signed(p.oblique_error_deg, 1)}\u00b0, tilt ${signed(p.tilt_error_deg, 1)}\u00b0`);
        }
        return;
      }
      case "safety": {
        if (typeof p.safe === "boolean") addText(cell, p.safe ? "safe" : "UNSAFE", p.safe ? "ok" : "bad");
        const v = Array.isArray(p.violations) ? p.violations : [];
        const during = Array.isArray(p.violations_during) ? p.violations_during : [];
        const warnings = Array.isArray(p.warnings) ? p.warnings : [];
        addText(cell, v.length ? `violations: ${listOf(v)}` : "no violations", v.length ? "bad" : "");
        if (during.length) addText(cell, `on the way: ${listOf(during)}`, "bad");
        if (warnings.length) addText(cell, `warnings: ${listOf(warnings)}`);
        if (p.min_clearance_mm && typeof p.min_clearance_mm === "object") {
          const items = Object.entries(p.min_clearance_mm).filter(([, mm]) => isNum(mm)).map(([name, mm]) => `${name.replace(/_/g, " ")} ${fmt(mm)} mm`);
          if (items.length) addText(cell, `closest: ${items.join(", ")}`);
        } else if (isNum(p.min_clearance_mm)) {
          addText(cell, `min clearance ${fmt(p.min_clearance_mm)} mm`);
        }
        return;
      }
      case "views": {
        const items = Array.isArray(p.items) ? p.items : [];
        if (!items.length) addText(cell, "no views assessed");
        for (const item of items) {
          if (!item || typeof item !== "object") continue;
          const off = isNum(item.closest_deg) ? `${fmtDeg(item.closest_deg)} off` : "not taken";
          const shot = item.shot !== null && item.shot !== undefined ? ` (shot ${item.shot})` : "";
          const good = isNum(item.closest_deg) && item.closest_deg <= 5;
          addText(cell, `${item.view || "view"}: ${off}${shot}`, good ? "ok" : "view");
          if (item.in_words) cell.lastChild.title = `the plan's view: ${item.in_words}`;
        }
        return;
      }
      case "radiation": {
        if (isNum(p.shots)) addText(cell, plural(p.shots, "shot"));
        if (isNum(p.dose_proxy_cm2)) addText(cell, `${fmt(p.dose_proxy_cm2, 0)} cm\u00b2`);
        if (isNum(p.uninformative_shots)) {
          const share = isNum(p.uninformative_share) ? ` (${Math.round(p.uninformative_share * 100)}%)` : "";
          addText(cell, `${p.uninformative_shots} uninformative${share}`);
        }
        if (isNum(p.expert_shots)) addText(cell, `an expert takes about ${p.expert_shots}`);
        return;
      }
      case "efficiency": {
        if (isNum(p.time_s)) addText(cell, `time ${fmtTime(p.time_s)}`);
        if (isNum(p.path_mm)) addText(cell, `path ${fmt(p.path_mm, 0)} mm`);
        if (isNum(p.redirections)) addText(cell, plural(p.redirections, "redirection"));
        if (isNum(p.back_and_forth)) addText(cell, `back-and-forth ${p.back_and_forth}`);
        if (isNum(p.punctures)) addText(cell, plural(p.punctures, "puncture"));
        const other = rest(p, ["time_s", "path_mm", "redirections", "back_and_forth", "punctures"]);
        if (Object.keys(other).length) addText(cell, compact(other));
        return;
      }
      default:
        addText(cell, compact(rest(p, [])));
    }
  }

  // load a picture the server renders on demand; `loading` says "rendering..." until it arrives
  function loadPicture(imgId, loadingId, url, what, onChange) {
    const img = $(imgId);
    const loading = $(loadingId);
    const changed = onChange || (() => {});
    img.removeAttribute("src");
    img.dataset.state = "loading";
    loading.classList.remove("failed");
    loading.onclick = null;
    loading.textContent = "rendering\u2026";
    if (typeof url !== "string" || !url) {
      img.dataset.state = "failed";
      loading.textContent = `The server's answer names no ${what}.`;
      loading.classList.add("failed");
      changed();
      return;
    }
    img.onload = () => { img.dataset.state = "ok"; changed(); };
    img.onerror = () => {
      img.dataset.state = "failed";
      loading.classList.add("failed");
      loading.textContent = `The ${what} could not be loaded. Click here to try again.`;
      loading.onclick = () => loadPicture(imgId, loadingId, url, what, onChange);
      showError(new ApiError(null, `GET ${url} failed`), `load the ${what}`);
      changed();
    };
    img.src = url;
    changed();
  }

  function showRevealPictures(reveal) {
    $("reveal-row").hidden = false;
    loadPicture("reveal-image", "reveal-loading", reveal.reveal_png, "plan on your last view", updateMonitor);
    loadPicture("review-image", "review-loading", reveal.review_png, "3D review picture", () => {
      $("review-loading").hidden = $("review-image").dataset.state === "ok";
    });
    const words = $("plan-words");
    words.textContent = "";
    words.append(el("h3", { text: "The plan" }));
    if (reveal.entry_in_words) words.append(el("p", {}, el("span", { class: "dim", text: "Entry: " }), String(reveal.entry_in_words)));
    if (reveal.trajectory_in_words) {
      words.append(el("p", {}, el("span", { class: "dim", text: "Needle seen as a dot at: " }), String(reveal.trajectory_in_words)));
    }
    const needle = app.state && app.state.needle;
    if (needle) {
      words.append(el("h3", { text: "Yours" }));
      words.append(el("p", {}, el("span", { class: "dim", text: "Needle seen as a dot at: " }),
        `${obliqueWords(needle.oblique_deg)} oblique, ${tiltWords(needle.tilt_deg)}; depth ${fmt(needle.depth_mm)} mm` +
        (needle.bone_contact ? ", on bone" : "")));
    }
    app.monitor = "reveal";
    $("viewer-tabs").hidden = false;
    updateMonitor();
  }

  // the monitor shows the last shot, or after Finish the plan drawn on the last view
  function updateMonitor() {
    const reveal = app.monitor === "reveal" && app.mode === "practice" && app.finished;
    $("tab-shot").classList.toggle("active", !reveal);
    $("tab-reveal").classList.toggle("active", reveal);
    $("shot-image").style.visibility = reveal ? "hidden" : "";
    const img = $("reveal-image");
    const state = img.dataset.state || "";
    img.hidden = !reveal || state !== "ok";
    $("reveal-loading").hidden = !reveal || state === "ok";
    $("viewer").classList.toggle("showing-reveal", reveal);
    const shot = app.lastShot;
    if (reveal) {
      $("shot-label").textContent = "The plan";
      $("shot-pose").textContent = shot ? `drawn on shot ${shot.number}'s view (${(shot.carm && shot.carm.in_words) || ""})` : "drawn on the plan's trajectory view (no shot was taken)";
      $("render-ms").textContent = "";
      $("shot-note").textContent = "";
    } else if (shot) {
      showShotCaption(shot);
    }
  }

  function openLightbox(src) {
    if (!src) return;
    $("lightbox-image").src = src;
    $("lightbox").hidden = false;
  }

  // ------------------------------------------------------------------ review mode

  async function startReview() {
    app.mode = "review";
    document.body.classList.add("review-mode");
    $("controls").hidden = true;
    $("review-panel").hidden = false;
    $("shoot").hidden = true;
    $("finish").hidden = true;
    setStatus("Loading the saved session\u2026", "info");
    let answer;
    try {
      answer = await api("GET", "/api/review");
    } catch (exc) {
      showError(exc, "load the session to review");
      setStatus("The saved session could not be loaded.", "event-full");
      return;
    }
    const log = (answer && (answer.log || answer)) || {};
    const actions = Array.isArray(log.actions) ? log.actions : [];
    app.review = { log, actions, score: answer.score || log.score || null };
    const info = log.session && typeof log.session === "object" ? log.session : log;
    const sessionId = typeof info.id === "string" ? info.id : "";
    const who = [info.trainee, info.started_utc || info.started, sessionId ? `session ${sessionId}` : ""];
    $("review-title").textContent = who.filter((x) => typeof x === "string" && x).join(" \u00b7 ");
    if (sessionId) $("session-id").textContent = `reviewing session ${sessionId}`;
    const list = $("review-list");
    list.textContent = "";
    actions.forEach((action, i) => {
      const row = el("div", { class: "row", role: "option", "data-i": String(i) },
        el("span", { text: `#${action.index ?? i}` }),
        el("span", { text: isNum(action.t_s) ? `${fmt(action.t_s)} s` : "" }),
        el("span", { text: actionLabel(action) }),
        el("span", { class: "input", text: actionInput(action) || action.message || "" }));
      row.addEventListener("click", () => selectStep(i));
      list.append(row);
    });
    $("review-slider").max = Math.max(0, actions.length - 1);
    if (app.review.score) {
      showScore(app.review.score);
      $("reveal-row").hidden = true;
      $("results").hidden = false;
    }
    if (!actions.length) {
      setStatus("The saved session has no actions to step through.", "info");
      return;
    }
    selectStep(0);
    setStatus(`Review: ${plural(actions.length, "step")}. Step with \u2190 \u2192 or the slider; N jumps to the next shot.`, "info");
  }

  function actionKind(action) {
    return String(action.kind || action.action || (action.input && action.input.action) || "?");
  }

  // what the list shows as the action: the needle's action itself, "C-arm" for a pose
  function actionLabel(action) {
    const kind = actionKind(action);
    const input = action.input && typeof action.input === "object" ? action.input : {};
    if (kind === "needle" && typeof input.action === "string") return input.action;
    if (kind === "carm") return "C-arm";
    return kind;
  }

  function actionInput(action) {
    const input = action.input;
    if (input === undefined || input === null) return "";
    if (typeof input !== "object") return String(input);
    const words = {
      oblique_deg: (v) => `oblique ${signed(v, Number.isInteger(v) ? 0 : 1)}\u00b0`,
      tilt_deg: (v) => `tilt ${signed(v, Number.isInteger(v) ? 0 : 1)}\u00b0`,
      collimator_mm: (v) => (v === null ? "open field" : `collimator ${compact(v)} mm`),
      left_mm: (v) => `left ${compact(v)} mm`,
      cranial_mm: (v) => `cranial ${compact(v)} mm`,
      mm: (v) => `${compact(v)} mm`,
      along: (v) => `along the ${v}`,
      preset: (v) => `${v} preset`,
      shot: (v) => `on shot ${v}`,
      col: (v) => `col ${compact(v)}`,
      row: (v) => `row ${compact(v)}`,
      trainee: (v) => (v ? `trainee ${v}` : ""),
    };
    return Object.entries(input)
      .filter(([k]) => k !== "action")
      .map(([k, v]) => (words[k] && (isNum(v) || typeof v === "string" || v === null) ? words[k](v) : `${k.replace(/_/g, " ")} ${compact(v)}`))
      .filter(Boolean)
      .join(", ");
  }

  function shotNumberOf(action) {
    if (!action) return null;
    const s = action.shot;
    if (isNum(s)) return s;
    if (s && typeof s === "object" && isNum(s.number)) return s.number;
    if (action.result && isNum(action.result.shot)) return action.result.shot;
    return null;
  }

  function selectStep(i) {
    const r = app.review;
    if (!r || !r.actions.length) return;
    i = Math.max(0, Math.min(r.actions.length - 1, i));
    app.reviewIndex = i;
    const action = r.actions[i];
    $("review-slider").value = i;
    $("review-pos").textContent = `${i + 1} / ${r.actions.length}`;
    const rows = $("review-list").children;
    for (const row of rows) row.classList.toggle("selected", row.dataset.i === String(i));
    if (rows[i]) rows[i].scrollIntoView({ block: "nearest" });

    // the latest shot at or before this step, its counts so far
    let shotIndex = -1;
    let shots = 0;
    let dose = 0;
    let doseKnown = false;
    for (let j = 0; j <= i; j += 1) {
      if (shotNumberOf(r.actions[j]) !== null && actionKind(r.actions[j]) === "shot") {
        shotIndex = j;
        shots += 1;
        const area = r.actions[j].carm && r.actions[j].carm.field_area_cm2;
        if (isNum(area)) { dose += area; doseKnown = true; }
      }
    }
    let punctures = 0;   // as the server counts them: a new entry while there was no needle or it was in
    for (let j = 1; j <= i; j += 1) {
      const a = r.actions[j];
      const before = r.actions[j - 1].needle;
      if (actionLabel(a) === "place" && (!before || !(before.depth_mm <= 1))) punctures += 1;
    }
    $("punctures").textContent = String(punctures);
    $("shot-count").textContent = String(shots);
    $("dose").textContent = doseKnown ? fmt(dose, 0) : "\u2014";
    $("elapsed").textContent = isNum(action.t_s) && action.t_s < 60 ? `${fmt(action.t_s)} s` : fmtTime(action.t_s);

    const detail = $("review-detail");
    detail.textContent = "";
    detail.append(el("div", {}, el("b", { text: `${actionLabel(action)}` }), isNum(action.t_s) ? ` at ${fmt(action.t_s)} s` : "",
      actionInput(action) ? el("span", { class: "kv", text: `  ${actionInput(action)}` }) : ""));
    const carm = action.carm;
    if (carm && typeof carm === "object") {
      detail.append(el("div", {}, el("span", { class: "kv", text: "C-arm: " }), carm.in_words || `oblique ${fmtDeg(carm.oblique_deg)}, tilt ${fmtDeg(carm.tilt_deg)}`));
    }
    const needle = action.needle;
    if (needle && typeof needle === "object") {
      detail.append(el("div", {}, el("span", { class: "kv", text: "Needle: " }),
        `depth ${fmt(needle.depth_mm)} mm, dot at oblique ${fmtDeg(needle.oblique_deg)}, tilt ${fmtDeg(needle.tilt_deg)}` +
        (needle.bone_contact === true ? ", on bone" : "")));
    } else if (needle === null) {
      detail.append(el("div", {}, el("span", { class: "kv", text: "Needle: " }), "not placed"));
    }
    const message = action.message || (action.result && action.result.message);
    if (typeof message === "string" && message) detail.append(el("div", { class: "kv", text: message }));

    if (shotIndex >= 0) {
      const shotAction = r.actions[shotIndex];
      const n = shotNumberOf(shotAction);
      const img = $("shot-image");
      const url = `/api/review/shots/${encodeURIComponent(n)}.png`;
      if (img.getAttribute("src") !== url) {
        $("pending-badge").hidden = false;
        $("pending-badge").textContent = "rendering\u2026";
        $("viewer").classList.add("stale");   // the previous picture, dimmed, until this one arrives
        img.onload = () => {
          if (img.getAttribute("src") !== url) return;   // a later step asked for another shot meanwhile
          $("pending-badge").hidden = true;
          $("viewer").classList.remove("stale");
        };
        img.onerror = () => {
          if (img.getAttribute("src") !== url) return;
          $("pending-badge").hidden = true;
          $("viewer").classList.remove("stale");
          showError(new ApiError(null, `GET ${url} failed`), `show shot ${n}`);
        };
        img.src = url;
      }
      $("viewer").classList.remove("empty");
      $("shot-label").textContent = `Shot ${n}`;
      const c = shotAction.carm || {};
      $("shot-pose").textContent = c.in_words || `oblique ${fmtDeg(c.oblique_deg)}, tilt ${fmtDeg(c.tilt_deg)}`;
      $("render-ms").textContent = "";
      $("shot-note").textContent = shotIndex === i ? "" : `The last shot before this step (step #${shotAction.index ?? shotIndex}).`;
    } else {
      $("shot-image").removeAttribute("src");
      $("viewer").classList.add("empty");
      $("viewer").classList.remove("stale");
      $("pending-badge").hidden = true;
      $("viewer-empty").textContent = "No shot taken yet at this step";
      $("shot-label").textContent = "Shot \u2014";
      $("shot-pose").textContent = "\u2014";
      $("shot-note").textContent = "";
    }
  }

  function nextShotStep() {
    const r = app.review;
    if (!r) return;
    for (let j = app.reviewIndex + 1; j < r.actions.length; j += 1) {
      if (actionKind(r.actions[j]) === "shot") { selectStep(j); return; }
    }
  }

  // ------------------------------------------------------------------ keyboard

  function isTypingTarget(node) {
    if (!node || node === document.body) return false;
    if (node.isContentEditable) return true;
    const tag = node.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag === "INPUT") {
      const type = (node.getAttribute("type") || "text").toLowerCase();
      return !["range", "checkbox", "radio", "button", "submit", "reset"].includes(type);
    }
    return false;
  }

  let spaceHandled = false;

  function onKeyDown(event) {
    if (event.key === "Escape") {
      if (!$("lightbox").hidden) $("lightbox").hidden = true;
      if (app.pickMode) setPickMode(false);
      if (isTypingTarget(document.activeElement)) document.activeElement.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTypingTarget(event.target)) return;
    const handled = app.mode === "review" ? reviewKey(event) : practiceKey(event);
    if (handled) {
      event.preventDefault();
      event.stopPropagation();
      if (event.key === " ") spaceHandled = true;
    }
  }

  function onKeyUp(event) {
    // a focused button or checkbox would act on Space's keyup as well
    if (event.key === " " && spaceHandled) {
      spaceHandled = false;
      event.preventDefault();
    }
  }

  function practiceKey(event) {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const big = event.shiftKey ? 5 : 1;
    const once = !event.repeat;
    switch (key) {
      case " ": case "x": if (once) shoot(); return true;
      case "ArrowLeft": nudgeCarm(-big, 0); return true;
      case "ArrowRight": nudgeCarm(+big, 0); return true;
      case "ArrowUp": nudgeCarm(0, -big); return true;
      case "ArrowDown": nudgeCarm(0, +big); return true;
      case "a": if (once) preset("ap"); return true;
      case "l": if (once) preset("lateral"); return true;
      case "o": if (once) preset("oblique"); return true;
      case "b": if (once) aimBeam(); return true;
      case "w": move("advance"); return true;
      case "s": move("withdraw"); return true;
      case "i": redirect("cephalad", 1); return true;
      case "k": redirect("caudal", 1); return true;
      case "j": redirect("medial", 1); return true;
      case "u": redirect("lateral", 1); return true;
      case "f": if (once) finish(); return true;
      default: return false;
    }
  }

  function reviewKey(event) {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    switch (key) {
      case "ArrowLeft": case "ArrowUp": selectStep(app.reviewIndex - 1); return true;
      case "ArrowRight": case "ArrowDown": selectStep(app.reviewIndex + 1); return true;
      case "Home": selectStep(0); return true;
      case "End": selectStep(Infinity); return true;
      case "n": nextShotStep(); return true;
      default: return false;
    }
  }

  // ------------------------------------------------------------------ wiring

  function on(id, type, handler) {
    $(id).addEventListener(type, handler);
  }

  function wireControls() {
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("keyup", onKeyUp);
    // a button clicked with the mouse gives the focus back, so that Space shoots instead of pressing it again
    document.addEventListener("click", (event) => {
      const button = event.target.closest && event.target.closest("button");
      if (button && event.detail > 0) button.blur();
    });

    on("shoot", "click", shoot);
    on("finish", "click", finish);
    on("new-attempt", "click", newSession);
    on("error-close", "click", clearError);

    // C-arm sliders: throttled while dragging, sent at once on release
    for (const [name, key] of [["oblique", "oblique"], ["tilt", "tilt"]]) {
      on(name, "input", () => { app.want[key] = Number($(name).value); carmChanged(false); });
      on(name, "change", () => { app.want[key] = Number($(name).value); carmChanged(true); });
      on(`${name}-num`, "change", () => {
        const value = Number($(`${name}-num`).value);
        if (!Number.isFinite(value) || $(`${name}-num`).value.trim() === "") { showCarmInputs(); return; }
        app.want[key] = clampTo(value, (app.limits || {})[`${key}_deg`]);
        carmChanged(true);
      });
    }
    on("collimator-open", "change", () => {
      if ($("collimator-open").checked) {
        app.want.collimator = null;
      } else {   // start collimating from the last diameter used, or two thirds of the largest
        const range = (app.limits || {}).collimator_mm || [60, 300];
        const last = Number($("collimator").value);
        app.want.collimator = isOpenField(last) ? Math.round((range[0] + 2 * range[1]) / 3 / 5) * 5 : last;
      }
      carmChanged(true);
    });
    on("collimator", "input", () => { app.want.collimator = Number($("collimator").value); carmChanged(false); });
    on("collimator", "change", () => { app.want.collimator = Number($("collimator").value); carmChanged(true); });
    on("collimator-num", "change", () => {
      const value = Number($("collimator-num").value);
      if (!Number.isFinite(value) || $("collimator-num").value.trim() === "") { showCarmInputs(); return; }
      app.want.collimator = clampTo(value, (app.limits || {}).collimator_mm);
      carmChanged(true);
    });
    on("preset-ap", "click", () => preset("ap"));
    on("preset-lateral", "click", () => preset("lateral"));
    on("preset-oblique", "click", () => preset("oblique"));

    // needle
    on("pick-entry", "click", () => {
      if (!canAct()) return;
      if (!app.lastShot) {
        setStatus("Take a shot first, then click it where the needle should enter.", "info");
        return;
      }
      setPickMode(!app.pickMode);
    });
    on("shot-image", "click", placeOnImage);
    on("shot-image", "mousemove", (event) => {
      const img = $("shot-image");
      if (!img.clientWidth || app.mode !== "practice") return;
      const size = (app.lastShot && app.lastShot.size) || 512;
      const col = (event.offsetX * size) / img.clientWidth;
      const row = (event.offsetY * size) / img.clientHeight;
      $("hover-readout").hidden = false;
      $("hover-readout").textContent = `col ${col.toFixed(0)}, row ${row.toFixed(0)}`;
    });
    on("shot-image", "mouseleave", () => { $("hover-readout").hidden = true; });
    on("place-offset", "click", placeByOffsets);
    on("aim-beam", "click", aimBeam);
    on("aim-angles", "click", aimAngles);
    on("advance", "click", () => move("advance"));
    on("withdraw", "click", () => move("withdraw"));
    for (const direction of ["cephalad", "caudal", "medial", "lateral"]) {
      on(`redirect-${direction}`, "click", () => redirect(direction, redirectStep()));
    }
    on("redirect-deg", "input", labelRedirects);
    // Enter in a needle field does what its button does
    for (const [field, button] of [["left-mm", "place-offset"], ["cranial-mm", "place-offset"], ["aim-oblique", "aim-angles"], ["aim-tilt", "aim-angles"]]) {
      on(field, "keydown", (event) => { if (event.key === "Enter") $(button).click(); });
    }

    // results
    on("tab-shot", "click", () => { app.monitor = "shot"; updateMonitor(); });
    on("tab-reveal", "click", () => { app.monitor = "reveal"; updateMonitor(); });
    on("review-image", "click", () => openLightbox($("review-image").src));
    on("lightbox", "click", () => { $("lightbox").hidden = true; });

    // review
    on("review-slider", "input", () => selectStep(Number($("review-slider").value)));
    on("review-prev", "click", () => selectStep(app.reviewIndex - 1));
    on("review-next", "click", () => selectStep(app.reviewIndex + 1));
    labelRedirects();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
