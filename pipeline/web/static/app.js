// poxi workbench page: paste/upload a note, queue a draft and follow its events, check, edit, download.
// Plain DOM, no build step, no external resources. All server text goes in with textContent.
// The access token (team use) arrives once in the URL fragment (#token=…), is traded for an HttpOnly
// cookie at /api/login and removed from the address bar. The writer's name goes in a header on every call.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS = { queued: "排队中", running: "运行中", done: "已完成", failed: "失败", cancelled: "已取消", interrupted: "已中断", damaged: "记录已损坏", unknown: "未知" };
const ACTIVE = ["queued", "running"];
const AUDIT_KINDS = { unsupported: "说明里没有的内容", remedy: "写成了整改措施", defence: "辩解或表功", echo: "提示词残留",
  register: "口径不符", heading: "标题不当", residue: "列表残留", repeat: "重复", rootless: "没挖到思想根源" };
let follow = null; // {id, after, stop}
let lastCheck = null; // {text, result}
let team = false; // the server needs a token and a writer's name

function writerName() { return $("writer").value.trim(); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (writerName()) headers["X-Poxi-Writer"] = encodeURIComponent(writerName());
  const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail;
    if (response.status === 401 && path !== "/api/login") showLogin();
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

// ---- access token and writer's name ----
function showLogin(message) {
  $("login").hidden = false;
  $("login-msg").textContent = message || "";
}

async function login(token) {
  try {
    await postJSON("/api/login", { token });
    $("login").hidden = true;
    return true;
  } catch (e) {
    showLogin(e.message);
    return false;
  }
}

async function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return;
  params.delete("token"); // the token must not stay in the address bar or the history
  history.replaceState(null, "", location.pathname + location.search + (params.toString() ? "#" + params.toString() : ""));
  await login(token);
}

$("login-btn").addEventListener("click", async () => {
  if (await login($("token-input").value.trim())) location.reload();
});

$("writer").value = localStorage.getItem("poxi-writer") || "";
$("writer").addEventListener("change", () => {
  localStorage.setItem("poxi-writer", writerName());
  $("who").classList.toggle("need", team && !writerName());
  loadHistory();
});

function needWriter() {
  if (!team || writerName()) return false;
  $("who").classList.add("need");
  $("writer").focus();
  say("run-msg", "请先在页面右上角填写你的名字：起草记录按名字分开保存。");
  return true;
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
  if (needWriter()) return;
  const body = { note: $("note").value, backend: backend(), base_url: $("base-url").value, model: $("model").value, api_key: $("api-key").value };
  try {
    const run = await postJSON("/api/runs", body);
    attach(run.id, run.status);
    if (run.queue) apply(Object.assign({ type: "queue" }, run.queue));
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

function setRunning(running, status, mine = true) {
  $("start").disabled = running && mine;
  $("cancel").disabled = !(running && mine);
  $("run-status").textContent = status ? STATUS[status] || status : "";
}

function minutes(seconds) {
  return seconds < 60 ? "不到 1 分钟" : `${Math.round(seconds / 60)} 分钟`;
}

function queueText(q) {
  const ahead = q.position > 1 ? `前面还有 ${q.position - 1} 份在排队，` : "";
  return `排队中：第 ${q.position} 位（${ahead}${q.running} 份正在起草），预计约 ${minutes(q.wait)}后开始`;
}

function attach(id, status = "running", mine = true) {
  if (follow) follow.stop = true;
  follow = { id, after: 0, stop: false, mine };
  location.hash = `run=${id}`;
  localStorage.setItem("poxi-run", id);
  $("steps").replaceChildren();
  $("live").replaceChildren();
  $("live").hidden = false;
  $("draft-run").textContent = id;
  clearCheck();
  setRunning(true, status, mine);
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
    if (!ACTIVE.includes(body.status) && body.events.length === 0) {
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
  if (type === "queue") {
    $("run-status").textContent = queueText(event);
  } else if (type === "step") {
    if (follow && event.step !== "cancel") setRunning(true, "running", follow.mine);
    $("steps").append(el("li", event.message || event.step));
  } else if (type === "section_start") {
    if (follow) setRunning(true, "running", follow.mine);
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
  setRunning(ACTIVE.includes(detail.status), detail.status, detail.mine !== false);
  if (detail.note && !$("note").value.trim()) { $("note").value = detail.note; updateCount(); }
  $("draft").value = detail.text || "";
  $("draft-run").textContent = detail.id;
  if (detail.text) $("live").hidden = true;
  if (detail.status === "cancelled") say("run-msg", detail.text ? "已取消：保留了已完成的部分。" : "已取消。", true);
  if ((detail.status === "damaged" || detail.status === "failed") && detail.error) say("run-msg", detail.error);
  if (detail.mine === false) say("run-msg", `这是 ${detail.writer || "（未署名）"} 共享的记录，只能查看。`, true);
  if (detail.check && detail.text) renderCheck(detail.text, detail.check);
}

async function openRun(id) {
  say("run-msg", "");
  let detail;
  try { detail = await api(`/api/runs/${id}`); } catch (e) { say("run-msg", e.message); return; }
  if (detail.live && ACTIVE.includes(detail.status)) {
    if (detail.note && !$("note").value.trim()) { $("note").value = detail.note; updateCount(); }
    attach(id, detail.status, detail.mine !== false);
    if (detail.queue) apply(Object.assign({ type: "queue" }, detail.queue));
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
    if (run.mine === false) item.append(el("span", `${run.writer || "（未署名）"} 共享`, "badge shared"));
    const link = el("a", `${new Date(run.time * 1000).toLocaleString("zh-CN")} ${run.note || run.id}`);
    link.addEventListener("click", () => openRun(run.id));
    item.append(link);
    if (run.mine && writerName() && !ACTIVE.includes(run.status)) {
      const share = el("button", run.shared ? "取消共享" : "共享", "link");
      share.title = run.shared ? "其他人将看不到这条记录" : "让使用这个工作台的其他人也能查看这条记录";
      share.addEventListener("click", async () => {
        try { await postJSON(`/api/runs/${run.id}/share`, { shared: !run.shared }); } catch (e) { say("run-msg", e.message); }
        loadHistory();
      });
      item.append(share);
    }
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
  $("legend").hidden = true;
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

// Audit findings (genre audit) with their place in the text; offsets are checked like the copied spans'.
function auditFindings(text, audit) {
  const out = [];
  for (const sec of (audit && audit.sections) || []) {
    for (const f of sec.findings || []) {
      let start = f.start, end = f.end;
      if (typeof start !== "number" || text.slice(start, end) !== f.text) {
        start = f.text ? text.indexOf(f.text) : -1;
        end = start + (f.text || "").length;
      }
      out.push(Object.assign({}, f, { section: sec.number, at: start >= 0 && end > start ? [start, end] : null }));
    }
  }
  return out;
}

function renderCheck(text, result) {
  lastCheck = { text, result };
  const copy = result.copy || { ratio: 0, copied: [] };
  const structure = result.structure || { passed: true, problems: [] };
  const findings = auditFindings(text, result.audit);
  const summary = $("check-summary");
  summary.replaceChildren();
  const head = el("div");
  head.append(el("span", result.passed ? "检查通过" : "检查未通过", `badge ${result.passed ? "pass" : "fail"}`));
  let line = ` 与范文相同的句子：${copy.copied.length} 句（占 ${(100 * (copy.ratio || 0)).toFixed(1)}%）；结构：${structure.passed ? "完整" : "有问题"}`;
  if (result.audit) line += `；审读：${result.audit.passed ? "通过" : "未通过"}，发现 ${findings.length} 处问题`;
  head.append(el("span", line));
  summary.append(head);
  const problems = (copy.problems || []).concat(structure.problems || []);
  if (problems.length) {
    const list = el("ul");
    for (const p of problems) list.append(el("li", typeof p === "string" ? p : p.message || JSON.stringify(p)));
    summary.append(list);
  }
  if (findings.length) {
    const list = el("ul", null, "audit-list");
    for (const f of findings) {
      const item = el("li");
      item.append(el("span", AUDIT_KINDS[f.kind] || f.kind, "kind"), el("span", `第 ${f.section} 条：${f.reason}`));
      if (f.text) item.title = f.text;
      list.append(item);
    }
    summary.append(list);
  }
  const box = $("checked");
  box.replaceChildren();
  const marked = findings.filter((f) => f.at);
  let at = 0;
  for (const s of spans(text, copy.copied)) {
    fillPiece(box, text, at, s.start, [], marked);
    const mark = el("mark", null, "copied");
    mark.dataset.i = s.i;
    mark.title = `与范文 ${s.c.source_id} 相同：${s.c.source_text}`;
    fillPiece(mark, text, s.start, s.end, s.c.runs || [], marked);
    mark.addEventListener("click", () => showSource(mark, s.c));
    box.append(mark);
    at = s.end;
  }
  fillPiece(box, text, at, text.length, [], marked);
  $("legend").hidden = !(copy.copied.length || marked.length);
}

// text[start:end) into `parent`: identical runs in <b>, audit findings in <mark class="audit"> with the reason on hover.
function fillPiece(parent, text, start, end, runs, findings) {
  if (end <= start) return;
  const cuts = new Set([start, end]);
  const inside = (x) => x > start && x < end;
  for (const [a, b] of runs) { if (inside(a)) cuts.add(a); if (inside(b)) cuts.add(b); }
  for (const f of findings) { if (inside(f.at[0])) cuts.add(f.at[0]); if (inside(f.at[1])) cuts.add(f.at[1]); }
  const edges = [...cuts].sort((a, b) => a - b);
  for (let k = 0; k + 1 < edges.length; k++) {
    const [a, b] = [edges[k], edges[k + 1]];
    let node = document.createTextNode(text.slice(a, b));
    if (runs.some(([x, y]) => x <= a && b <= y)) { const bold = el("b"); bold.append(node); node = bold; }
    const here = findings.filter((f) => f.at[0] <= a && b <= f.at[1]);
    if (here.length) {
      const mark = el("mark", null, "audit");
      mark.dataset.kind = here.map((f) => f.kind).join(" ");
      mark.title = here.map((f) => `${AUDIT_KINDS[f.kind] || f.kind}：${f.reason}`).join("\n");
      mark.append(node);
      node = mark;
    }
    parent.append(node);
  }
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
  await tokenFromFragment();
  try {
    const settings = await api("/api/settings");
    team = !!settings.team;
    $("who").classList.toggle("need", team && !writerName());
    for (const url of settings.endpoints || []) $("endpoints").append(Object.assign(document.createElement("option"), { value: url }));
    if (settings.base_url) {  // an endpoint configured by flag or env var is the default choice
      $("base-url").value = settings.base_url;
      document.querySelector("input[name=backend][value=endpoint]").checked = true;
      $("endpoint").hidden = false;
    }
    if (settings.model) $("model").value = settings.model;
    $("font-note").textContent = settings.font_note ? settings.font_note.replace("本机", "服务器所在电脑") : "";
  } catch (e) { /* the page still works with defaults; a missing token shows the login bar */ }
  if (needWriter()) return;
  const runs = (await loadHistory()) || [];
  const match = location.hash.match(/run=([\w.-]+)/);
  const going = runs.find((r) => ACTIVE.includes(r.status) && r.mine !== false);
  if (match) openRun(match[1]);
  else if (going) openRun(going.id);
})();
