// facefit's web page: plain browser JavaScript, no build step and nothing from elsewhere.
// Everything goes through the REST API with the key typed in the page; the API's own error messages
// are shown as they are, next to what caused them. The page checks nothing the API does not check too.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "facefit.key"; // sessionStorage: kept for this tab only, gone when it closes

// -- the API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body; // the answer's JSON, when it had one
  }
}

/** The API's `detail`, in one line: a string as it is, validation errors as "where: what". */
function describe(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

async function api(method, path, { form, json, raw } = {}) {
  const headers = {};
  const key = $("key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (form) body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    throw new ApiError(response.status, describe(body && body.detail, response.status), body);
  }
  if (raw) return response;
  return response.json();
}

/** Show an error (or clear it with null) in the line with id `where`; key errors go by the key too. */
function showError(where, err) {
  const line = $(where);
  line.textContent = err ? err.message : "";
  if (err && (err.status === 401 || err.status === 403)) $("key-error").textContent = err.message;
  else if (err === null && where !== "key-error") $("key-error").textContent = "";
}

// -- names: the gallery's own rule (store.check_name), so a bad name is refused before any upload ------

const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function checkName(name) {
  const clean = name.trim().normalize("NFC");
  if (!clean) throw new Error("a person's name cannot be empty");
  if ([...clean].length > 200) throw new Error("not a usable name (over 200 characters)");
  if (!clean.isWellFormed() || clean.includes("\ufffd")) throw new Error("not a usable name (not valid UTF-8)");
  if (clean === "." || clean === "..") throw new Error("not a usable name (a URL would read it as a path step)");
  const bad = clean.match(INVISIBLE);
  if (bad) {
    const code = bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw new Error(`not a usable name (it holds U+${code}; control, invisible format and line-separator ` +
                    "characters make names that look alike)");
  }
  return clean;
}

const personPath = (name) => `persons/${encodeURIComponent(name)}`;

// -- drawing faces ---------------------------------------------------------------------------------

function label(face) {
  const who = face.name === null ? "unknown" : face.name;
  return face.distance === null ? who : `${who} (${face.distance.toFixed(3)})`;
}

/** Boxes and names over `canvas`, whose picture is `scale` times the photo's size. */
function drawFaces(ctx, faces, scale) {
  ctx.lineWidth = 3;
  ctx.font = "16px sans-serif";
  ctx.textBaseline = "bottom";
  for (const face of faces) {
    const [x0, y0, x1, y1] = face.box.map((v) => v * scale);
    const colour = face.name === null ? "#e0a000" : "#20b040";
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = label(face);
    const w = ctx.measureText(text).width + 8;
    ctx.fillStyle = colour;
    ctx.fillRect(x0, Math.max(0, y0 - 22), w, 22);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x0 + 4, Math.max(22, y0) - 3);
  }
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file as an image"));
    img.src = URL.createObjectURL(blob);
  });
}

function facesList(faces, into) {
  into.replaceChildren();
  if (!faces.length) {
    into.textContent = "no face found";
    return;
  }
  const list = document.createElement("ol");
  for (const face of faces) {
    const item = document.createElement("li");
    item.className = face.name === null ? "unknown" : "known";
    const who = document.createElement("strong");
    who.textContent = face.name === null ? "unknown" : face.name;
    item.append(who);
    if (face.distance !== null) item.append(` distance ${face.distance.toFixed(3)}`);
    if (face.matches.length) {
      const top = face.matches.map((m) => `${m.name} ${m.distance.toFixed(3)}`).join(", ");
      item.append(`; closest: ${top}`);
    }
    list.append(item);
  }
  into.append(list);
}

// -- the webcam ------------------------------------------------------------------------------------

const camera = { stream: null };

async function cameraStream() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser gives no camera here (a page served over plain http from another " +
                    "machine gets none: use https or localhost)");
  }
  if (!camera.stream) camera.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  return camera.stream;
}

function stopCamera() {
  if (camera.stream) camera.stream.getTracks().forEach((t) => t.stop());
  camera.stream = null;
}

/** A JPEG of the video's current frame. */
function grab(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

/** Open the camera panel; resolves with a captured JPEG, or null when cancelled. */
async function capture() {
  const panel = $("camera");
  const video = $("camera-video");
  video.srcObject = await cameraStream();
  await video.play();
  panel.hidden = false;
  try {
    return await new Promise((resolve) => {
      $("camera-snap").onclick = async () => resolve(await grab(video));
      $("camera-cancel").onclick = () => resolve(null);
    });
  } finally {
    panel.hidden = true;
    video.srcObject = null;
    if (!live.running) stopCamera();
  }
}

// -- identify --------------------------------------------------------------------------------------

const identify = { snapshot: null };

async function runIdentify() {
  showError("identify-error", null);
  const file = identify.snapshot || $("identify-file").files[0];
  if (!file) {
    showError("identify-error", new Error("choose a photo or take one first"));
    return;
  }
  const result = $("identify-result");
  result.textContent = "identifying...";
  const form = new FormData();
  form.append("image", file, file.name || "camera.jpg");
  try {
    const answer = await api("POST", "identify", { form });
    const canvas = $("identify-canvas");
    let scale = 1;
    try {
      const img = await loadImage(file);
      scale = Math.min(1, 720 / img.naturalWidth);
      canvas.width = Math.round(img.naturalWidth * scale);
      canvas.height = Math.round(img.naturalHeight * scale);
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      drawFaces(ctx, answer.faces, scale);
    } catch (err) {
      canvas.width = canvas.height = 0; // the server read it, the browser cannot show it: the list says all
    }
    facesList(answer.faces, result);
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = `threshold ${answer.threshold} (${answer.threshold_source}), ${answer.metric} distance`;
    result.append(note);
  } catch (err) {
    result.textContent = "";
    showError("identify-error", err);
  }
}

// -- verify ----------------------------------------------------------------------------------------

async function runVerify() {
  showError("verify-error", null);
  const a = $("verify-file-a").files[0];
  const b = $("verify-file-b").files[0];
  const result = $("verify-result");
  if (!a || !b) {
    showError("verify-error", new Error("choose two photos"));
    return;
  }
  const form = new FormData();
  form.append("image_a", a, a.name);
  form.append("image_b", b, b.name);
  result.textContent = "comparing...";
  try {
    const v = await api("POST", "verify", { form });
    result.replaceChildren();
    const verdict = document.createElement("strong");
    verdict.textContent = v.same ? "same person" : "not the same person";
    verdict.className = v.same ? "known" : "unknown";
    result.append(verdict, ` distance ${v.distance.toFixed(3)}, threshold ${v.threshold} ` +
                  `(${v.threshold_source}), ${v.metric}`);
  } catch (err) {
    result.textContent = "";
    showError("verify-error", err);
  }
}

// -- live ------------------------------------------------------------------------------------------

const live = { running: false, frames: 0, since: 0 };
const LIVE_MIN_INTERVAL_MS = 100; // at most 10 requests a second, even from a fast server

async function startLive() {
  showError("live-error", null);
  const video = $("live-video");
  try {
    video.srcObject = await cameraStream();
    await video.play();
  } catch (err) {
    showError("live-error", err);
    return;
  }
  live.running = true;
  live.frames = 0;
  live.since = performance.now();
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  liveLoop();
}

function stopLive() {
  live.running = false;
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
  $("live-video").srcObject = null;
  stopCamera();
}

/** One frame at a time: the next is sent when the answer to the last is in, so the server sets the pace. */
async function liveLoop() {
  const video = $("live-video");
  const overlay = $("live-overlay");
  while (live.running) {
    const started = performance.now();
    if (!video.videoWidth) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const frame = await grab(video);
    const form = new FormData();
    form.append("image", frame, "frame.jpg");
    try {
      const answer = await api("POST", "identify", { form });
      if (!live.running) break;
      overlay.width = video.clientWidth;
      overlay.height = video.clientHeight;
      const ctx = overlay.getContext("2d");
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      drawFaces(ctx, answer.faces, overlay.width / video.videoWidth);
      facesList(answer.faces, $("live-result"));
      live.frames += 1;
      const seconds = (performance.now() - live.since) / 1000;
      $("live-rate").textContent = `${(live.frames / seconds).toFixed(1)} frames/s`;
      showError("live-error", null);
    } catch (err) {
      showError("live-error", err);
      if (err.status === 401 || err.status === 403 || err.status === 409) {
        stopLive(); // no later frame would fare better
        break;
      }
    }
    const wait = LIVE_MIN_INTERVAL_MS - (performance.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

// -- enrol -----------------------------------------------------------------------------------------

const enrolCaptures = [];

function showCaptures() {
  const n = enrolCaptures.length;
  $("enrol-captures").textContent = n ? `${n} webcam capture${n > 1 ? "s" : ""} to enrol` : "";
}

async function runEnrol() {
  showError("enrol-error", null);
  const result = $("enrol-result");
  result.replaceChildren();
  let name;
  try {
    name = checkName($("enrol-name").value);
  } catch (err) {
    showError("enrol-error", err);
    return;
  }
  const files = [...$("enrol-file").files, ...enrolCaptures];
  if (!files.length) {
    showError("enrol-error", new Error("choose one or more photos, or add webcam captures"));
    return;
  }
  const form = new FormData();
  files.forEach((f, i) => form.append("images", f, f.name || `camera-${i}.jpg`));
  result.textContent = "enrolling...";
  let report;
  try {
    const face = $("enrol-face").value; // the API's face= choice; without it such photos are refused
    const query = face ? `?${new URLSearchParams({ face })}` : "";
    report = await api("POST", `${personPath(name)}/faces${query}`, { form });
  } catch (err) {
    result.textContent = "";
    // A 422 with a report: no photo was usable; the report says why, photo by photo.
    if (!(err.body && Array.isArray(err.body.failures))) {
      showError("enrol-error", err);
      return;
    }
    report = err.body;
  }
  enrolCaptures.length = 0;
  showCaptures();
  result.replaceChildren();
  const list = document.createElement("ul");
  const line = (cls, text) => {
    const item = document.createElement("li");
    item.className = cls;
    item.textContent = text;
    list.append(item);
  };
  report.added.forEach((a) => line("known", `used: ${a.source} (face ${a.face_id})`));
  report.duplicates.forEach((d) => line("note", `duplicate: ${d.source}, already enrolled as ${d.enrolled_as}`));
  report.failures.forEach((f) => line("unknown", `failed: ${f.source}: ${f.reason}`));
  const head = document.createElement("p");
  head.textContent = report.added.length
    ? `${report.person}: ${report.added.length} face(s) added`
    : `${report.person}: nothing added`;
  result.append(head, list);
  refreshStatus();
}

// -- gallery ---------------------------------------------------------------------------------------

const PAGE = 20;
const gallery = { offset: 0, total: 0 };
const crops = []; // object URLs of shown crops, freed when the list is redrawn

async function loadGallery() {
  showError("gallery-error", null);
  const params = new URLSearchParams({ limit: PAGE, offset: gallery.offset });
  const q = $("gallery-search").value.trim();
  if (q) params.set("q", q);
  let response;
  try {
    response = await api("GET", `persons?${params}`, { raw: true });
  } catch (err) {
    showError("gallery-error", err);
    return;
  }
  const persons = await response.json();
  gallery.total = Number(response.headers.get("X-Total-Count") || persons.length);
  if (!persons.length && gallery.offset > 0 && gallery.total > 0) {
    gallery.offset = Math.max(0, gallery.offset - PAGE); // the last page emptied: show the one before
    return loadGallery();
  }
  crops.splice(0).forEach((u) => URL.revokeObjectURL(u));
  const list = $("gallery-list");
  list.replaceChildren(...persons.map(personRow));
  const last = Math.min(gallery.offset + persons.length, gallery.total);
  $("gallery-info").textContent = gallery.total
    ? `${gallery.offset + 1}-${last} of ${gallery.total}` : "no one enrolled" + (q ? " by that name" : "");
  $("gallery-prev").disabled = gallery.offset === 0;
  $("gallery-next").disabled = last >= gallery.total;
}

function personRow(person) {
  const row = $("person-template").content.firstElementChild.cloneNode(true);
  row.dataset.name = person.name;
  row.querySelector(".person-name").textContent = person.name;
  row.querySelector(".person-count").textContent = `${person.faces} face${person.faces === 1 ? "" : "s"}`;
  const error = row.querySelector(".error");
  const fail = (err) => {
    error.textContent = err.message;
  };
  row.querySelector(".show").onclick = () => showCrops(person.name, row).catch(fail);
  row.querySelector(".rename").onclick = async () => {
    const wanted = window.prompt(`New name for ${person.name}:`, person.name);
    if (wanted === null) return;
    try {
      const name = checkName(wanted);
      await api("PATCH", personPath(person.name), { json: { name } });
      await loadGallery();
    } catch (err) {
      fail(err);
    }
  };
  row.querySelector(".delete").onclick = async () => {
    if (!window.confirm(`Remove ${person.name} and all their ${person.faces} face(s)? This cannot be undone.`)) return;
    try {
      await api("DELETE", personPath(person.name));
      await loadGallery();
      refreshStatus();
    } catch (err) {
      fail(err);
    }
  };
  return row;
}

async function showCrops(name, row) {
  const box = row.querySelector(".crops");
  box.replaceChildren();
  const detail = await api("GET", personPath(name));
  for (const face of detail.faces) {
    const figure = document.createElement("figure");
    figure.dataset.testid = "face-crop";
    const img = document.createElement("img");
    img.alt = `face ${face.id} of ${name}`;
    const caption = document.createElement("figcaption");
    caption.textContent = face.source;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove face";
    remove.dataset.testid = "face-delete";
    remove.onclick = async () => {
      if (!window.confirm(`Remove this face of ${name}?`)) return;
      try {
        const r = await api("DELETE", `${personPath(name)}/faces/${face.id}`);
        if (r.remaining_faces === 0) await loadGallery();
        else await showCrops(name, row);
        refreshStatus();
      } catch (err) {
        row.querySelector(".error").textContent = err.message;
      }
    };
    figure.append(img, caption, remove);
    box.append(figure);
    // Crops need the key, which an <img src> cannot send: fetched, then shown from a local object URL.
    api("GET", `${personPath(name)}/faces/${face.id}/crop`, { raw: true })
      .then((r) => r.blob())
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        crops.push(url);
        img.src = url;
      })
      .catch((err) => {
        caption.textContent = `${face.source}: ${err.message}`;
      });
  }
}

// -- the header: model, threshold, gallery size ----------------------------------------------------

async function refreshStatus() {
  const parts = [];
  try {
    const health = await api("GET", "health");
    parts.push(`model ${health.model}`);
    const n = (count, what) => `${count} ${what}${count === 1 ? "" : "s"}`;
    parts.push(health.gallery === null ? "no gallery" : `${n(health.persons, "person")}, ${n(health.faces, "face")}`);
  } catch (err) {
    parts.push(`the server does not answer: ${err.message}`);
  }
  try {
    const model = await api("GET", "model");
    const t = model.thresholds || {};
    const value = t[model.distance];
    if (value !== undefined) parts.push(`threshold ${typeof value === "number" ? value : JSON.stringify(value)} ` +
                                        `(${model.distance})`);
  } catch (err) {
    if (err.status === 401) parts.push("enter the API key to use the gallery");
  }
  $("status").textContent = parts.join(" \u00b7 ");
}

// -- wiring ----------------------------------------------------------------------------------------

function showView(name) {
  document.querySelectorAll(".view").forEach((v) => {
    v.hidden = v.id !== name;
  });
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  if (name !== "live" && live.running) stopLive();
  if (name === "gallery") loadGallery();
}

function init() {
  const key = $("key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, key.value.trim());
    $("key-error").textContent = "";
    refreshStatus();
  });
  document.querySelectorAll("nav button").forEach((b) => {
    b.onclick = () => showView(b.dataset.view);
  });
  $("identify-submit").onclick = runIdentify;
  $("identify-file").onchange = () => {
    identify.snapshot = null;
  };
  $("identify-camera").onclick = async () => {
    try {
      const shot = await capture();
      if (shot) {
        identify.snapshot = shot;
        $("identify-file").value = "";
        await runIdentify();
      }
    } catch (err) {
      showError("identify-error", err);
    }
  };
  $("verify-submit").onclick = runVerify;
  $("live-start").onclick = startLive;
  $("live-stop").onclick = stopLive;
  $("enrol-submit").onclick = runEnrol;
  $("enrol-name").oninput = () => {
    try {
      checkName($("enrol-name").value || "x");
      showError("enrol-error", null);
    } catch (err) {
      showError("enrol-error", err);
    }
  };
  $("enrol-camera").onclick = async () => {
    try {
      const shot = await capture();
      if (shot) enrolCaptures.push(shot);
      showCaptures();
    } catch (err) {
      showError("enrol-error", err);
    }
  };
  let searchTimer = null;
  $("gallery-search").oninput = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      gallery.offset = 0;
      loadGallery();
    }, 250);
  };
  $("gallery-prev").onclick = () => {
    gallery.offset = Math.max(0, gallery.offset - PAGE);
    loadGallery();
  };
  $("gallery-next").onclick = () => {
    gallery.offset += PAGE;
    loadGallery();
  };
  const wanted = location.hash.slice(1);
  showView([...document.querySelectorAll(".view")].some((v) => v.id === wanted) ? wanted : "identify");
  refreshStatus();
  document.body.dataset.ready = "1"; // for tests: the page is wired
}

document.addEventListener("DOMContentLoaded", init);
