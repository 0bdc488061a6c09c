// pose3d demo: upload an image (POST /v1/pose3d) or a clip (a job: POST /v1/jobs, progress from GET /v1/jobs/{id},
// frames as they complete from its NDJSON results), or stream the webcam (WebSocket /v1/streams/ws); the 2D
// overlay is drawn on a canvas over the media, the 3D skeleton with three.js (orbit, zoom).
// Test hooks: window.pose3dDemo.state (what was drawn) and window.pose3dDemo.renderer.
import * as THREE from "three";
import { OrbitControls } from "./vendor/OrbitControls.js";

const BONES = [[0, 1], [1, 2], [2, 3], [0, 4], [4, 5], [5, 6], [0, 7], [7, 8], [8, 9], [9, 10],
  [8, 11], [11, 12], [12, 13], [8, 14], [14, 15], [15, 16]];
const LEFT = new Set([4, 5, 6, 11, 12, 13]);
const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128]];
const $ = (id) => document.getElementById(id);

const state = { mode: "idle", frames: 0, people: 0, bones: 0, lastFrame: null, wsOpened: false, wsResults: 0,
  wsClosed: null, error: null, warnings: [], randomWeights: null, job: null, jobState: null, framesTotal: null,
  components: [] };
let results = [];  // frames of the current upload, by frame_index order

function threeColour(rgb) {  // page colours are sRGB; three.js works in linear light
  return new THREE.Color().setRGB(rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, THREE.SRGBColorSpace);
}

function colour(track, left) {
  const c = PALETTE[track % PALETTE.length];
  const k = left ? 0.45 : 0;
  return c.map((v) => Math.round(v + (255 - v) * k));
}

// ---------- 3D ----------
const holder = $("three");
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setSize(holder.clientWidth, holder.clientHeight);
renderer.setClearColor(0xffffff);
holder.appendChild(renderer.domElement);
const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(45, holder.clientWidth / holder.clientHeight, 0.01, 100);
camera.position.set(0.8, 0.4, 3.2);
const controls = new OrbitControls(camera, renderer.domElement);
controls.target.set(0, 0, 0);
controls.update();
const grid = new THREE.GridHelper(2, 8, 0x999999, 0xdddddd);
grid.position.y = -1;
scene.add(grid);
const skeletons = new THREE.Group();
scene.add(skeletons);

function offsets(people) {
  if (people.length < 2) return people.map(() => 0);
  const centres = people.map((p) => (p.box[0] + p.box[2]) / 2);
  const mean = centres.reduce((a, b) => a + b, 0) / centres.length;
  return people.map((p, i) => ((centres[i] - mean) / Math.max(1, p.box[3] - p.box[1])) * 1.7);
}

function draw3d(people) {
  skeletons.clear();
  let bones = 0;
  people.forEach((person, i) => {
    const dx = offsets(people)[i];
    const pts = person.keypoints_3d.map(([x, y, z]) => new THREE.Vector3(x + dx, -y, -z));  // camera -> y up
    const positions = [], colours = [];
    for (const [a, b] of BONES) {
      const c = threeColour(colour(person.track_id, LEFT.has(b)));
      positions.push(pts[a].x, pts[a].y, pts[a].z, pts[b].x, pts[b].y, pts[b].z);
      colours.push(c.r, c.g, c.b, c.r, c.g, c.b);
      bones += 1;
    }
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.Float32BufferAttribute(positions, 3));
    geometry.setAttribute("color", new THREE.Float32BufferAttribute(colours, 3));
    skeletons.add(new THREE.LineSegments(geometry, new THREE.LineBasicMaterial({ vertexColors: true })));
    for (const p of pts) {
      const joint = new THREE.Mesh(new THREE.SphereGeometry(0.025, 8, 6),
        new THREE.MeshBasicMaterial({ color: threeColour(colour(person.track_id, false)) }));
      joint.position.copy(p);
      skeletons.add(joint);
    }
  });
  state.people = people.length;
  state.bones = bones;
  if (fitPending && people.length) fitView();
}

// the view is fitted to the first frame of each upload or stream (then the user's orbit and zoom stay)
let fitPending = true;
function fitView() {
  fitPending = false;
  const sphere = new THREE.Box3().setFromObject(skeletons).getBoundingSphere(new THREE.Sphere());
  const radius = Math.max(0.5, sphere.radius);
  const distance = radius / Math.sin(THREE.MathUtils.degToRad(camera.fov / 2)) * 1.1;
  const direction = new THREE.Vector3(0.8, 0.4, 3.2).normalize();
  controls.target.copy(sphere.center);
  camera.position.copy(sphere.center).addScaledVector(direction, distance);
  camera.far = Math.max(100, distance * 4);
  camera.updateProjectionMatrix();
  grid.position.set(sphere.center.x, sphere.center.y - radius, sphere.center.z);
  grid.scale.setScalar(radius);
  controls.update();
  state.fitted = { radius, distance };
}

function animate() {
  requestAnimationFrame(animate);
  syncVideo();
  controls.update();
  renderer.render(scene, camera);
}

// ---------- 2D ----------
function mediaElement() { return $("image").hidden ? $("video") : $("image"); }

function draw2d(people, width, height) {
  const el = mediaElement(), canvas = $("overlay");
  canvas.width = el.clientWidth; canvas.height = el.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!width || !height) return;
  const sx = canvas.width / width, sy = canvas.height / height;
  ctx.lineWidth = 3;
  const inside = ([x, y]) => x >= 0 && y >= 0 && x <= width - 1 && y <= height - 1;
  for (const person of people) {
    for (const [a, b] of BONES) {  // a joint outside the image draws no line across it (as server renders)
      if (!inside(person.keypoints_2d[a]) || !inside(person.keypoints_2d[b])) continue;
      const [r, g, bl] = colour(person.track_id, LEFT.has(b));
      ctx.strokeStyle = `rgb(${r},${g},${bl})`;
      ctx.beginPath();
      ctx.moveTo(person.keypoints_2d[a][0] * sx, person.keypoints_2d[a][1] * sy);
      ctx.lineTo(person.keypoints_2d[b][0] * sx, person.keypoints_2d[b][1] * sy);
      ctx.stroke();
    }
  }
}

function show(frame, width, height) {
  if (!frame) return;
  draw2d(frame.people, width, height);
  draw3d(frame.people);
  state.lastFrame = frame.frame_index;
  $("frame").textContent = frame.frame_index;
  $("people").textContent = frame.people.length;
}

// ---------- uploads ----------
function frameAt(t) {  // the last result at or before t seconds (results are in frame_index order)
  let best = results[0];
  for (const f of results) { if ((f.timestamp_s ?? 0) <= t + 1e-3) best = f; else break; }
  return best;
}

let shownVideoFrame = null;
function syncVideo() {
  const video = $("video");
  if (state.mode !== "clip" || video.hidden || !results.length || !video.videoWidth) return;  // metadata first
  const frame = frameAt(video.currentTime);
  if (frame && frame !== shownVideoFrame) {
    shownVideoFrame = frame;
    show(frame, video.videoWidth, video.videoHeight);
  }
}

function setWarnings(list) {  // one line; the list opens on a click
  state.warnings = list;
  const box = $("warnings");
  box.hidden = list.length === 0;
  $("warnings-summary").textContent = list.length === 1 ? list[0]
    : `${list.length} warnings: ${list[0] ?? ""} (click for all)`;
  $("warnings-list").replaceChildren(...list.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
}

function fail(text) {
  state.error = text;
  $("status").textContent = "error: " + text;
}

function showMedia(file, isVideo) {
  const url = URL.createObjectURL(file);
  shownVideoFrame = null;
  if (isVideo) {
    state.mode = "clip";
    $("image").hidden = true;
    const video = $("video");
    video.srcObject = null;
    video.hidden = false;
    video.onerror = () => {  // e.g. a codec this browser cannot play: still show the first result
      setWarnings([...state.warnings, `this browser cannot play the clip (${video.error?.message}); showing frame 0`]);
      if (results.length) show(results[0], 0, 0);
    };
    video.src = url;
  } else {
    state.mode = "image";
    $("video").hidden = true;
    const img = $("image");
    img.hidden = false;
    img.onload = () => show(results[0], img.naturalWidth, img.naturalHeight);
    img.src = url;
  }
}

async function problemText(response) {
  const body = await response.json().catch(() => ({}));
  return `${body.status ?? response.status} ${body.title ?? ""}: ${body.detail ?? ""}`;
}

async function uploadImage(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  $("status").textContent = "estimating…";
  const response = await fetch("../v1/pose3d", { method: "POST", body: form });
  if (!response.ok) return fail(await problemText(response));
  const body = await response.json();
  results = body.frames;
  state.frames = results.length;
  setWarnings([...modelWarnings(), ...(body.warnings || []).filter((w) => !/RANDOM/.test(w))]);
  $("timings").textContent = Object.entries(body.timings_ms).map(([k, v]) => `${k}: ${v.toFixed(1)} ms`).join("\n");
  showMedia(file, false);
  $("status").textContent = `${results.length} frame(s) from ${body.model.name}`;
}

function setProgress(done, total) {
  const bar = $("progress");
  bar.hidden = false;
  bar.max = total || Math.max(1, done);
  bar.value = done;
  $("status").textContent = `job ${state.job.slice(0, 8)}: ${done}/${total ?? "?"} frames (${state.jobState})`;
}

async function followStatus(jobId) {  // progress and state, until the job ends
  for (;;) {
    const response = await fetch(`../v1/jobs/${jobId}`);
    if (!response.ok) return fail(await problemText(response));
    const status = await response.json();
    state.jobState = status.state;
    state.framesTotal = status.frames_total;
    setProgress(Math.max(status.frames_done, results.length), status.frames_total);
    if (["done", "failed", "cancelled"].includes(status.state)) return status;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function readResults(jobId) {  // NDJSON frames as they complete, appended to results (in order)
  const response = await fetch(`../v1/jobs/${jobId}/results`, { headers: { Accept: "application/x-ndjson" } });
  if (!response.ok) return fail(await problemText(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines.filter((l) => l.trim())) {
      const item = JSON.parse(line);
      if (item.error) return fail(`${item.error.status} ${item.error.title}: ${item.error.detail}`);
      results.push(item);
      state.frames = results.length;
      setProgress(results.length, state.framesTotal);
    }
  }
}

async function uploadClip(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  $("status").textContent = "submitting the clip as a job…";
  const response = await fetch("../v1/jobs", { method: "POST", body: form });
  if (!response.ok) return fail(await problemText(response));
  const job = await response.json();
  state.job = job.job_id;
  state.jobState = job.state ?? "queued";
  setWarnings(modelWarnings());
  $("timings").textContent = "";  // a job reports progress, not per-request timings
  showMedia(file, true);  // plays at once: each frame's pose shows as soon as its result has arrived
  const [status] = await Promise.all([followStatus(job.job_id), readResults(job.job_id)]);
  if (status && status.state === "done") {
    $("status").textContent = `job ${job.job_id.slice(0, 8)}: ${results.length} frame(s) from ${status.model}`;
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return fail("choose an image or a clip first");
  results = [];
  fitPending = true;
  state.frames = 0;
  state.lastFrame = null;  // set again once the new media shows its first result
  state.error = null;
  $("progress").hidden = true;
  return file.type.startsWith("video/") ? uploadClip(file) : uploadImage(file);
}

// ---------- live (webcam over the WebSocket) ----------
let live = null;

async function startLive() {
  const video = $("video");
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
  state.mode = "live";
  fitPending = true;
  $("image").hidden = true;
  video.hidden = false;
  video.removeAttribute("src");
  video.srcObject = stream;
  await video.play();
  const url = new URL("../v1/streams/ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  const grab = document.createElement("canvas");
  live = { ws, stream, index: 0, inFlight: 0, start: performance.now(), timer: null };
  ws.onopen = () => ws.send(JSON.stringify({ type: "open", model: $("model").value, mode: "causal" }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "opened") {
      state.wsOpened = true;
      setWarnings([...modelWarnings(), ...(msg.warnings || []).filter((w) => !/RANDOM/.test(w))]);
      live.timer = setInterval(sendFrame, 100);
    } else if (msg.type === "results") {
      if (!msg.final) live.inFlight -= 1;
      state.wsResults += msg.frames.length;
      const last = msg.frames[msg.frames.length - 1];
      if (last) show(last, video.videoWidth, video.videoHeight);
      $("timings").textContent = `last frame: ${msg.timings_ms.total.toFixed(1)} ms`;
    } else if (msg.type === "problem") {
      fail(`${msg.problem.status} ${msg.problem.title}: ${msg.problem.detail}`);
    }
  };
  ws.onclose = (event) => { state.wsClosed = event.code; stopLive(false); };
  function sendFrame() {
    if (live.inFlight >= 2 || ws.readyState !== WebSocket.OPEN || !video.videoWidth) return;  // bounded
    grab.width = video.videoWidth; grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    const image = grab.toDataURL("image/jpeg", 0.85);
    ws.send(JSON.stringify({ type: "frame", frame_index: live.index, timestamp_s: (performance.now() - live.start) / 1000, image }));
    live.index += 1;
    live.inFlight += 1;
  }
  $("live").textContent = "Stop webcam";
  $("status").textContent = "live";
}

function stopLive(sendClose = true) {
  if (!live) return;
  clearInterval(live.timer);
  if (sendClose && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "close" }));
  live.stream.getTracks().forEach((t) => t.stop());
  live = null;
  $("live").textContent = "Start webcam";
}

// ---------- models ----------
function modelWarnings() {  // what runs on random weights: the chosen lifter and the stages behind it
  const random = [];
  if (state.randomWeights) random.push(`model ${$("model").value}`);
  for (const c of state.components) if (c.random_weights) random.push(`${c.kind.replace("_", " ")} ${c.name}`);
  return random.length ? [`RANDOM WEIGHTS (${random.join(", ")}): poses are meaningless`] : [];
}

async function loadModels() {
  const response = await fetch("../v1/models");
  const body = await response.json();
  const select = $("model");
  for (const m of body.models) {
    const option = new Option(`${m.name} (${m.kind}${m.random_weights ? ", RANDOM WEIGHTS" : ""})`, m.name);
    option.dataset.random = m.random_weights;
    select.add(option);
  }
  select.value = body.default_clip_model;
  state.components = body.components || [];
  $("pipeline").textContent = state.components.map((c) =>
    `${c.kind === "keypoint_detector" ? "2D" : "people"}: ${c.name === c.version ? c.name : `${c.name} ${c.version}`}`
    + (c.random_weights ? " (random)" : "")).join(" · ");
  const flag = () => {
    const random = select.selectedOptions[0]?.dataset.random === "true";
    state.randomWeights = random;
    $("weights").className = "badge " + (random ? "random" : "real");
    $("weights").textContent = random ? "RANDOM WEIGHTS" : "trained weights";
    setWarnings(modelWarnings());
  };
  select.onchange = flag;
  flag();
}

$("upload").addEventListener("submit", (e) => upload(e).catch((err) => fail(String(err))));
$("live").addEventListener("click", () => (live ? stopLive() : startLive().catch((err) => fail(String(err)))));
window.pose3dDemo = { state, renderer, scene, camera, stopLive };
loadModels().then(() => { state.ready = true; }).catch((err) => fail(String(err)));
animate();
