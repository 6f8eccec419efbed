// poxi workbench page: paste/upload a note, run a draft and follow its events, check, edit, download.
// Plain DOM, no build step, no external resources. All server text goes in with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS = { running: "运行中", done: "已完成", failed: "失败", cancelled: "已取消", interrupted: "已中断", unknown: "未知" };
let follow = null; // {id, after, stop}
let lastCheck = null; // {text, result}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail;
    throw new Error(typeof detail === "string" ? detail : `请求失败（HTTP ${response.status}）`);
  }
  return body;
}

function postJSON(path, data) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
}

function say(id, text, ok = false) {
  $(id).textContent = text || "";
  $(id).classList.toggle("ok", ok);
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// ---- note input ----
function updateCount() { $("note-count").textContent = $("note").value.trim() ? `${$("note").value.trim().length} 字` : ""; }
$("note").addEventListener("input", updateCount);

$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file) return;
  say("note-msg", "");
  const form = new FormData();
  form.append("file", file);
  try {
    const body = await api("/api/note", { method: "POST", body: form });
    $("note").value = body.text;
    updateCount();
    say("note-msg", `已读取「${body.name}」。`, true);
  } catch (e) {
    say("note-msg", e.message);
  } finally {
    $("upload").value = "";
  }
});

for (const radio of document.querySelectorAll("input[name=backend]")) {
  radio.addEventListener("change", () => { $("endpoint").hidden = backend() !== "endpoint"; });
}
function backend() { return document.querySelector("input[name=backend]:checked").value; }

// ---- runs ----
$("start").addEventListener("click", async () => {
  say("run-msg", "");
  const body = { note: $("note").value, backend: backend(), base_url: $("base-url").value, model: $("model").value, api_key: $("api-key").value };
  try {
    const run = await postJSON("/api/runs", body);
    attach(run.id);
    loadHistory();
  } catch (e) {
    say("run-msg", e.message);
  }
});

$("cancel").addEventListener("click", async () => {
  if (!follow) return;
  $("cancel").disabled = true;
  try { await postJSON(`/api/runs/${follow.id}/cancel`, {}); } catch (e) { say("run-msg", e.message); }
});

function setRunning(running, status) {
  $("start").disabled = running;
  $("cancel").disabled = !running;
  $("run-status").textContent = status ? STATUS[status] || status : "";
}

function attach(id) {
  if (follow) follow.stop = true;
  follow = { id, after: 0, stop: false };
  location.hash = `run=${id}`;
  localStorage.setItem("poxi-run", id);
  $("steps").replaceChildren();
  $("live").replaceChildren();
  $("live").hidden = false;
  $("draft-run").textContent = id;
  clearCheck();
  setRunning(true, "running");
  poll(follow);
}

async function poll(state) {
  while (!state.stop) {
    let body;
    try {
      body = await api(`/api/runs/${state.id}/events?after=${state.after}&wait=20`);
      $("conn").textContent = "";
    } catch (e) {
      $("conn").textContent = "与服务器的连接中断，正在重试……";
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (state.stop) return;
    for (const event of body.events) apply(event);
    state.after = body.next;
    if (body.status !== "running" && body.events.length === 0) {
      await finish(state.id, body.status);
      return;
    }
  }
}

function section(index) {
  let node = $("live").querySelector(`[data-index="${index}"]`);
  if (!node) {
    node = el("div", null, "sec");
    node.dataset.index = index;
    node.append(el("h3", ""), el("div", ""));
    $("live").append(node);
  }
  return node;
}

function apply(event) {
  const type = event.type;
  if (type === "step") {
    $("steps").append(el("li", event.message || event.step));
  } else if (type === "section_start") {
    const node = section(event.index);
    node.querySelector("h3").textContent = `第 ${event.index + 1} 条：${event.heading || ""}`;
    node.classList.add("streaming");
  } else if (type === "token") {
    section(event.index).querySelector("div").textContent += event.text;
  } else if (type === "section_done") {
    const node = section(event.index);
    node.querySelector("div").textContent = event.text;
    node.classList.remove("streaming");
    const heading = node.querySelector("h3");
    if (event.text.replace(/^\s+/, "").startsWith(heading.textContent.replace(/^第 \d+ 条：/, ""))) heading.hidden = true;
  } else if (type === "error") {
    $("steps").append(el("li", event.message, "error"));
    say("run-msg", event.message);
  } else if (type === "finished") {
    setRunning(false, event.status);
  }
  $("steps").scrollTop = $("steps").scrollHeight;
}

async function finish(id, status) {
  setRunning(false, status);
  let detail;
  try { detail = await api(`/api/runs/${id}`); } catch (e) { say("run-msg", e.message); return; }
  show(detail);
  loadHistory();
}

function show(detail) {
  setRunning(detail.status === "running", detail.status);
  if (detail.note && !$("note").value.trim()) { $("note").value = detail.note; updateCount(); }
  $("draft").value = detail.text || "";
  $("draft-run").textContent = detail.id;
  if (detail.text) $("live").hidden = true;
  if (detail.status === "cancelled") say("run-msg", "已取消：保留了已完成的部分。", true);
  if (detail.check && detail.text) renderCheck(detail.text, detail.check);
}

async function openRun(id) {
  say("run-msg", "");
  let detail;
  try { detail = await api(`/api/runs/${id}`); } catch (e) { say("run-msg", e.message); return; }
  if (detail.live && detail.status === "running") {
    if (detail.note && !$("note").value.trim()) { $("note").value = detail.note; updateCount(); }
    attach(id);
    return;
  }
  if (follow) follow.stop = true;
  follow = null;
  location.hash = `run=${id}`;
  $("steps").replaceChildren();
  $("live").replaceChildren();
  clearCheck();
  show(detail);
}

async function loadHistory() {
  let body;
  try { body = await api("/api/runs"); } catch (e) { return; }
  const list = $("history");
  list.replaceChildren();
  if (!body.runs.length) list.append(el("li", "还没有运行记录。", "muted"));
  for (const run of body.runs) {
    const item = el("li");
    item.append(el("span", STATUS[run.status] || run.status, `badge ${run.status}`));
    if (run.passed === true) item.append(el("span", "检查通过", "badge pass"));
    if (run.passed === false) item.append(el("span", "检查未通过", "badge fail"));
    const link = el("a", `${new Date(run.time * 1000).toLocaleString("zh-CN")} ${run.note || run.id}`);
    link.addEventListener("click", () => openRun(run.id));
    item.append(link);
    list.append(item);
  }
  return body.runs;
}
$("refresh").addEventListener("click", loadHistory);

// ---- check ----
function clearCheck() {
  lastCheck = null;
  $("checked").replaceChildren();
  $("check-summary").replaceChildren();
  $("source").hidden = true;
  say("check-msg", "");
}

$("check").addEventListener("click", async () => {
  const text = $("draft").value;
  clearCheck();
  say("check-msg", "正在检查……", true);
  try {
    const result = await postJSON("/api/check", { text, note: $("note").value });
    say("check-msg", "");
    renderCheck(text, result);
  } catch (e) {
    say("check-msg", e.message);
  }
});

// Offsets from the server index the checked text; fall back to searching the sentence if they do not match.
function spans(text, copied) {
  const out = [];
  for (const [i, c] of copied.entries()) {
    let start = c.start, end = c.end;
    if (text.slice(start, end) !== c.sentence) {
      start = text.indexOf(c.sentence);
      end = start + c.sentence.length;
    }
    if (start >= 0 && end > start) out.push({ start, end, i, c });
  }
  out.sort((a, b) => a.start - b.start);
  return out.filter((s, k) => k === 0 || s.start >= out[k - 1].end);
}

function renderCheck(text, result) {
  lastCheck = { text, result };
  const copy = result.copy || { ratio: 0, copied: [] };
  const structure = result.structure || { passed: true, problems: [] };
  const summary = $("check-summary");
  summary.replaceChildren();
  const head = el("div");
  head.append(el("span", result.passed ? "检查通过" : "检查未通过", `badge ${result.passed ? "pass" : "fail"}`));
  head.append(el("span", ` 与范文相同的句子：${copy.copied.length} 句（占 ${(100 * (copy.ratio || 0)).toFixed(1)}%）；结构：${structure.passed ? "完整" : "有问题"}`));
  summary.append(head);
  const problems = (copy.problems || []).concat(structure.problems || []);
  if (problems.length) {
    const list = el("ul");
    for (const p of problems) list.append(el("li", typeof p === "string" ? p : p.message || JSON.stringify(p)));
    summary.append(list);
  }
  const box = $("checked");
  box.replaceChildren();
  let at = 0;
  for (const s of spans(text, copy.copied)) {
    box.append(document.createTextNode(text.slice(at, s.start)));
    const mark = el("mark", null, "copied");
    mark.dataset.i = s.i;
    mark.title = `与范文 ${s.c.source_id} 相同：${s.c.source_text}`;
    fillRuns(mark, text, s);
    mark.addEventListener("click", () => showSource(mark, s.c));
    box.append(mark);
    at = s.end;
  }
  box.append(document.createTextNode(text.slice(at)));
}

function fillRuns(mark, text, s) {
  let at = s.start;
  const runs = (s.c.runs || []).filter((r) => r[0] >= at && r[1] <= s.end).sort((a, b) => a[0] - b[0]);
  for (const [a, b] of runs) {
    if (a < at) continue;
    mark.append(document.createTextNode(text.slice(at, a)), el("b", text.slice(a, b)));
    at = b;
  }
  mark.append(document.createTextNode(text.slice(at, s.end)));
}

function showSource(mark, c) {
  for (const m of document.querySelectorAll("mark.active")) m.classList.remove("active");
  mark.classList.add("active");
  const box = $("source");
  box.replaceChildren(
    el("div", `来源：范文 ${c.source_id}（最长连续相同 ${c.longest} 字，覆盖 ${Math.round(100 * c.containment)}%）`),
    el("blockquote", c.source_text),
    el("div", "建议：结合本单位情况换一种说法重写这句，再点“检查”。", "muted"),
  );
  box.hidden = false;
}

// ---- download ----
function download(fmt) {
  const text = $("draft").value;
  if (!text.trim()) { say("check-msg", "没有可下载的内容：草稿是空的。"); return; }
  const form = $("export-form");
  form.elements.text.value = text;
  form.elements.fmt.value = fmt;
  form.elements.title.value = "";
  form.submit();
}
$("dl-md").addEventListener("click", () => download("md"));
$("dl-docx").addEventListener("click", () => download("docx"));

// ---- start: re-attach to the run named in the URL, or to one still running ----
(async function init() {
  updateCount();
  try {
    const settings = await api("/api/settings");
    if (settings.base_url) {  // an endpoint configured by flag or env var is the default choice
      $("base-url").value = settings.base_url;
      document.querySelector("input[name=backend][value=endpoint]").checked = true;
      $("endpoint").hidden = false;
    }
    if (settings.model) $("model").value = settings.model;
    $("font-note").textContent = settings.font_note ? settings.font_note.replace("本机", "服务器所在电脑") : "";
  } catch (e) { /* the page still works with defaults */ }
  const runs = (await loadHistory()) || [];
  const match = location.hash.match(/run=([\w.-]+)/);
  const running = runs.find((r) => r.status === "running");
  if (match) openRun(match[1]);
  else if (running) openRun(running.id);
})();
