"""Test doubles that implement the real interfaces: chat models (ChatModel) and an embedder (Embedder)."""

import hashlib
import inspect
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from pipeline.errors import Cancelled
from pipeline.model.client import Completion


@dataclass
class ScriptedChat:
    """Returns scripted replies in order (a callable reply gets the messages, and the schema when it takes
    two arguments); records every call."""

    replies: list
    name: str = "scripted"
    calls: list = field(default_factory=list)
    # a move call (a frame to fill: schema property 句子) is answered by `fill`, not from `replies`, and
    # recorded in `move_calls`: the scripts stay about links; None sends move calls to `replies` too
    fill: object = "default"
    move_calls: list = field(default_factory=list)

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, cancel=None, **kwargs):
        if self.fill is not None and schema and "句子" in schema.get("properties", {}):
            self.move_calls.append({"messages": messages, "schema": schema, "seed": seed, "temperature": temperature,
                                    "avoid": kwargs.get("avoid")})
            text = json.dumps({"句子": (fill_move if self.fill == "default" else self.fill)(messages, schema)},
                              ensure_ascii=False)
            return Completion(text, sum(len(m["content"]) for m in messages) // 2, len(text) // 2, 0.0, self.name)
        self.calls.append({"messages": messages, "json_mode": json_mode, "max_tokens": max_tokens, "schema": schema,
                           "seed": seed, "temperature": temperature, "avoid": kwargs.get("avoid")})
        if cancel is not None and cancel.is_set():  # as OpenAIChat: a set cancel ends the call at once
            raise Cancelled("已取消：模型调用已中止。")
        if not self.replies:
            raise AssertionError("ScriptedChat ran out of replies")
        reply = self.replies.pop(0)
        if callable(reply):
            text = reply(messages, schema) if len(inspect.signature(reply).parameters) == 2 else reply(messages)
        else:
            text = reply
        if not isinstance(text, str):
            text = json.dumps(text, ensure_ascii=False)
        if on_token:
            for piece in (text[i : i + 8] for i in range(0, len(text), 8)):
                on_token(piece)
        prompt = sum(len(m["content"]) for m in messages)
        return Completion(text, prompt // 2, len(text) // 2, 0.0, self.name)


@dataclass
class EchoChat:
    """Replies with the last user message: shows exactly what a prompt assembled."""

    name: str = "echo"

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, cancel=None, **kwargs):
        start = time.perf_counter()
        text = messages[-1]["content"]
        if on_token:
            on_token(text)
        return Completion(text, len(text), len(text), time.perf_counter() - start, self.name)


class HashEmbedder:
    """Deterministic bag-of-character-bigrams vectors: similar strings get similar vectors."""

    name = "hash-test"
    dim = 64

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for a, b in zip(text, text[1:]):
                out[row, int(hashlib.md5((a + b).encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def link_openings_in(messages) -> list[str]:
    """The openings a section prompt gives its links ("问题1：<problem>，根子在于"), as the schema fixes them."""
    return [re.sub(r"（思想根子从中选一：.*）$", "", line.split("：", 1)[1]) for line in messages[-1]["content"].split("\n")
            if re.match(r"^问题\d+：", line)]


def link_roots(schema, messages) -> list[list[str]]:
    """The thinking each link of a section may name, in link order: the schema pattern's second group, or
    without a schema the list on each problem line of the prompt."""
    if schema is None:
        return [re.search(r"（思想根子从中选一：(.*)）$", line).group(1).split("；")
                for line in messages[-1]["content"].split("\n") if re.match(r"^问题\d+：", line)]
    out = []
    for item in schema["properties"]["联系"]["prefixItems"]:
        group = re.search(r"\)\(([^()]*)\)\(，", item["pattern"]).group(1)
        out.append([re.sub(r"\[(.)\]", r"\1", root) for root in group.split("|")])
    return out


FILLERS = ["按时完成", "听取意见", "跟踪问效", "安排部署", "上级检查", "基层实情"]


def fill_move(messages, schema) -> str:
    """A sentence that follows a move's grammar: each slot of the frame filled with a four-character filler."""
    pattern = schema["properties"]["句子"]["pattern"][1:-1]
    slots = re.findall(r"\(\[\^(?:\\.|[^\]\\])*\]\{\d+,\d+\}\)", pattern)  # each slot: ([^…]{lo,hi})
    for k, slot in enumerate(slots):
        pattern = pattern.replace(slot, FILLERS[k % len(FILLERS)], 1)
    return re.sub(r"\[(.)\]", r"\1", pattern)


def send_json(handler, status: int, payload, headers: dict | None = None) -> None:
    """Answer an http.server request with a JSON body (the scripted servers' one way to reply)."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def chat_body(text="好的", prompt=11, completion=2, model="fake-model", finish="stop"):
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class FakeServer:
    """Answers POST /v1/chat/completions from `script` (one action per request; default: a canned reply)."""

    def __init__(self):
        self.script, self.requests, self.hangups = [], [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._send(self, 200, {"object": "list", "data": [{"id": "listed-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                action = server.script.pop(0) if server.script else ("json", 200, chat_body())
                kind = action[0]
                if kind == "json":
                    server._send(self, action[1], action[2], *action[3:])
                elif kind == "raw":
                    self.send_response(action[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(action[2])))
                    self.end_headers()
                    self.wfile.write(action[2])
                elif kind == "sleep":
                    time.sleep(action[1])
                    server._send(self, 200, chat_body())
                elif kind == "keepalive":  # an SSE stream kept open with comment lines, never a token
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    server._drip(self, b": keep-alive\n\n", action[1])
                elif kind == "trickle":  # a JSON body that never completes: one space at a time
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    server._drip(self, b" ", action[1])
                elif kind == "sse":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in action[1]:
                        chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                        self.wfile.flush()
                    if action[3:] == ("cut",):
                        return  # connection closes without a finish_reason or [DONE]
                    if action[3:4] == ("stall",):
                        time.sleep(action[4])  # goes quiet mid-stream, past the client's read timeout
                        return
                    last = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                    if action[2]:
                        usage = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                                 "choices": [], "usage": action[2]}
                        self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up mid-reply is expected here
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _drip(self, handler, data, seconds):
        """Write `data` every 50 ms for `seconds` or until the client hangs up; record when it did."""
        start = time.perf_counter()
        try:
            while time.perf_counter() - start < seconds:
                handler.wfile.write(data)
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            self.hangups.append(time.perf_counter())

    _send = staticmethod(send_json)


# -- the eval suite (tests/evaluation/): notes, drafts the gates pass, a scripted writer and endpoint ----------

CN = "一二三四五六七八九十"
# cause sentences; a bureau and a school get different ones, so their drafts share little wording
CAUSES = {
    "bureau": [
        "根子在于班子把这件事当成业务末端的小事，没有摆上党组会议题，也没有明确专人盯办。",
        "追根溯源，是考核只看任务数量，不看群众感受，干部自然把精力放在报表和台账上。",
        "说到底是担心出错被问责，宁可层层请示、多方会签，也不愿拍板担责。",
        "班子成员分工时各管一摊，遇到交叉事项互相等待，缺少牵头协调的机制。",
        "对制度执行的检查停留在发通知、要材料，很少到现场抽查，问题就一直悬着。",
    ],
    "school": [
        "支委会研究教学多、研究育人少，党员教师的示范岗设了却没人去评。",
        "备课组习惯沿用旧教案，学校也没有把课堂改革纳入教师年度评价。",
        "面对家长意见，校领导第一反应是解释而不是改进，回应机制迟迟没有建起来。",
        "支部书记兼任副校长，事务性工作挤占了抓支部建设的精力。",
        "师德考核年年打优秀，谈话提醒很少动真碰硬，个别苗头没有及早纠正。",
    ],
    "market": [
        "监管科室各自制定检查计划，从不坐下来对表，商户自然疲于应付。",
        "抽检之后的核查处置没有倒排时限，办案人员手头积案一多就往后放。",
        "窗口改革只改了流程图，后台系统和人员培训没跟上，群众感受不到变化。",
        "局党组把执法权力运行当成业务问题，很少从廉洁角度审视自由裁量。",
        "领读条例变成了走程序，没有对照执法岗位逐条找风险、定措施。",
    ],
}


def causes_for(text: str) -> list[str]:
    return CAUSES["school" if "小学" in text else "market" if "市场监督" in text else "bureau"]


def note_problems(note: str) -> list[str]:
    return [re.sub(r"^\s*(\d{1,2}\s*[.、)）]|[-·•①-⑩])\s*", "", line).strip("。；") for line in note.splitlines()[1:]
            if len(line.strip()) > 8 and not line.strip().endswith("：")]


def good_draft(note: str, sections: int = 5) -> str:
    """A draft a checker should pass: numbered sections built from the note's own lines, nothing from the corpus."""
    lines, causes = note_problems(note), causes_for(note)
    parts = []
    for k in range(sections):
        fact = lines[k % len(lines)]
        angle = ["思想根源", "深层原因", "认识偏差", "作风根源", "制度原因", "能力短板"][k % 6]  # headings differ
        parts.append(f"（{CN[k]}）{fact[:14].rstrip('，,')}的{angle}。{fact}。{causes[k % len(causes)]}")
    return "\n".join(parts)


def make_case(folder: Path, cid: str, note: str, problems: list[str], **expect) -> Path:
    data = {"id": cid, "unit_kind": "县直部门", "year": 2024, "theme": "党纪学习教育", "note": note,
            "expect": {"problems": problems, "min_sections": 4, "length": [200, 2600], "must_not_contain": [], **expect}}
    path = folder / f"{cid}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


NOTE_A = """临河县自然资源局党组，2024年专题民主生活会。
1. 全年班子成员下基层调研仅6次，多是陪同检查。
2. 3个产业项目用地审批超过承诺时限，最长拖了47天。
3. 违法占用耕地图斑21处，整改销号只完成12处。
4. 不动产登记窗口排队时间长，一窗受理还没落地。"""
NOTE_B = """城关第二小学党支部，2024年度组织生活会。
1. 学生思政课照本宣科，党史进课堂只搞了几次公开课。
2. 家长反映三年级作业量偏多，课后服务内容单一。
3. 校级课题8项只有2项由党员教师牵头。
4. 有家长投诉个别老师推荐教辅资料，处理不及时。"""


def fake_draft(note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
    """Stands in for chain.draft: one model call whose reply is the draft."""
    reply = chat.complete([{"role": "system", "content": "起草原因剖析"}, {"role": "user", "content": note}])
    stats = {"calls": 1, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
             "seconds": reply.seconds, "steps": {"draft": reply.seconds}}
    return SimpleNamespace(text=reply.text, sections=[], check={}, passed=True, record_path=Path("run.json"), stats=stats)


def writer(make=good_draft, n=50):
    """A scripted chat model whose every reply is `make(note)`."""
    return ScriptedChat([lambda messages: make(messages[-1]["content"])] * n)


def _score(case, text, config):
    """The gates' verdict on one draft of `case` (pipeline.evaluation.score, the default gate file)."""
    from pipeline.evaluation.cases import load_gates
    from pipeline.evaluation.score import run_check, score_case

    return score_case(case, text, run_check(text, case.note, config), load_gates())


def _copy_corpus(text):
    """`text` with the longest sentence of a corpus sample pasted in after its first sentence."""
    from pipeline.corpus.samples import load_corpus, split_sentences

    sentence = max(split_sentences(load_corpus().items[5].body), key=len)
    return text.replace("。", "。" + sentence, 1)


def fake_audit(text: str) -> dict:
    """An audit result of the shape check_text(...).to_dict()["audit"] has (pipeline/audit.py contract)."""
    from pipeline.evaluation.score import KIND_NAMES

    findings = []
    for kind, needle, reason in (("remedy", "班子成员", "写的是措施而非原因"), ("heading", "的思想根源", "标题复述问题")):
        start = text.find(needle)
        if start >= 0:
            findings.append({"kind": kind, "text": needle, "start": start, "end": start + len(needle), "reason": reason})
    counts = {k: 0 for k in KIND_NAMES}
    for f in findings:
        counts[f["kind"]] += 1
    return {"passed": not findings, "counts": counts, "sections": [{"number": 1, "heading": "h", "findings": findings}]}


class Endpoint:
    """A scripted OpenAI-compatible server on loopback: `respond(body) -> text` answers each chat request."""

    def __init__(self, respond, delay: float = 0.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.respond, self.delay, self.requests = respond, delay, []
        self.active = self.peak = 0
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                import time

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    time.sleep(server.delay)
                    text = server.respond(body)
                finally:
                    with lock:
                        server.active -= 1
                reply = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": len(text), "total_tokens": 100 + len(text)}}
                send_json(self, 200, reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def verdict(scores: dict, reason: str = "依据初稿原文判断") -> str:
    return json.dumps({k: {"score": v, "reason": reason} for k, v in scores.items()}, ensure_ascii=False)


CRITERIA = ["grounded", "causes", "voice", "invented", "headings"]


def remote_reply(body: dict) -> str:
    """Drafts (four sections where the embedded fake writes five) or, for the judge, a verdict:
    5 on every criterion for the school's draft, 2 for the bureau's."""
    first = body["messages"][1]["content"]
    if "评分标准" in first:
        return verdict({c: 5 if "小学" in first else 2 for c in CRITERIA})
    return good_draft(first, sections=4)


def replace_config(config, **kw):
    from dataclasses import replace

    return replace(config, **kw)


def prompt_copy(tmp_path, drop: str | None = None) -> Path:
    """A copy of the shipped prompt folder (less the prompt `drop`), as a second prompt set."""
    from pipeline.config import load_config

    folder = tmp_path / "prompts-b"
    folder.mkdir(parents=True)
    for p in load_config().prompts_dir.glob("*.yaml"):
        if p.stem != drop:
            (folder / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


# -- the workbench (tests/web/): a draft function on chain.draft's contract, a slow endpoint, API routes --------

LOCAL = "http://127.0.0.1:8765"  # the address the app thinks it serves: Host and Origin are checked against it
KEY = "sk-server-SECRET-0123456789abcdef"
TOKEN = "team-token-0123456789abcdef"

COPIED = "对理论学习的紧迫性、重要性认识不够，思想上没有把理论学习作为“硬指标”“硬任务”，还没能做到自觉自愿持之以恒。"
WEB_NOTE = "某区数据局党支部：理论学习不够深入，联系服务群众不够经常，数据共享推进慢。"
SECTIONS = [("（一）理论学习不够深入", "（一）理论学习不够深入。" + COPIED),
            ("（二）宗旨意识有所淡化", "（二）宗旨意识有所淡化。深入基层调研次数偏少，群众反映的数据共享难题解决慢。")]


@dataclass
class Result:
    text: str
    sections: list
    check: dict
    passed: bool
    record_path: Path
    stats: dict = field(default_factory=dict)


class FakeDraft:
    """Emits the contract's events and writes a record; pauses after section 0 until `gate` is set."""

    def __init__(self):
        self.gate = threading.Event()
        self.calls = []

    def __call__(self, note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
        self.calls.append({"note": note, "base_url": config.base_url, "model": config.model, "chat": chat,
                           "api_key": config.api_key, "run_id": run_id})
        record = config.runs_dir / run_id / "record.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        write = lambda **kw: record.write_text(json.dumps({"note": note, "model": "fake", "calls": [], **kw}, ensure_ascii=False), encoding="utf-8")
        write(status="running")
        on_event({"type": "step", "step": "plan", "message": "规划条目"})
        done = []
        for index, (heading, text) in enumerate(SECTIONS):
            if cancel.is_set():
                break
            on_event({"type": "section_start", "index": index, "heading": heading})
            for k in range(0, len(text), 10):
                on_event({"type": "token", "index": index, "text": text[k : k + 10]})
            on_event({"type": "section_done", "index": index, "text": text})
            done.append(text)
            if index == 0:
                self.gate.wait(10)
        text = "\n\n".join(done)
        from pipeline.checks.runner import check_text

        check = check_text(text, corpus_dir=config.corpus).to_dict()
        status = "cancelled" if cancel.is_set() else "done"
        write(status=status, text=text, check=check)
        on_event({"type": "done"})
        return Result(text, [{"text": t} for t in done], check, check["passed"], record)


def wait_finished(client, run_id, timeout=10.0, headers=None):
    after, events, deadline = 0, [], time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/api/runs/{run_id}/events", params={"after": after, "wait": 2}, headers=headers).json()
        events += body["events"]
        after = body["next"]
        if body["status"] not in ("queued", "running") and not body["events"]:
            return events
    raise AssertionError("run did not finish")


class SlowEndpoint:
    """Answers chat completions after `delay` seconds; records each request's Authorization header and the
    most requests it ever had in flight at once."""

    def __init__(self, delay: float = 0.2):
        self.delay, self.auth, self.inflight, self.most = delay, [], 0, 0
        self.lock, self.closing = threading.Lock(), threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                endpoint.send(self, {"object": "list", "data": [{"id": "slow-model", "object": "model"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with endpoint.lock:
                    endpoint.auth.append(self.headers.get("Authorization"))
                    endpoint.inflight += 1
                    endpoint.most = max(endpoint.most, endpoint.inflight)
                try:
                    endpoint.closing.wait(endpoint.delay)
                    endpoint.send(self, {"id": "c", "object": "chat.completion", "created": 0, "model": "slow-model",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "宗旨意识有所淡化。"}}],
                                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
                except OSError:
                    pass  # the client hung up (a cancelled call)
                finally:
                    with endpoint.lock:
                        endpoint.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def send(handler, payload):
        send_json(handler, 200, payload)

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _accepts_cancel() -> bool:
    from pipeline.model.client import OpenAIChat

    return "cancel" in inspect.signature(OpenAIChat.complete).parameters


def endpoint_draft(note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
    """Stands in for chain.draft: three model calls over the real OpenAI client (the chat the workbench made)."""
    extra = {"cancel": cancel} if _accepts_cancel() else {}
    texts = []
    for index in range(3):
        if cancel.is_set():
            break
        on_event({"type": "section_start", "index": index, "heading": f"第{index + 1}条"})
        text = chat.complete([{"role": "user", "content": note}], max_tokens=20, **extra).text
        on_event({"type": "section_done", "index": index, "text": text})
        texts.append(text)
    return Result("\n\n".join(texts), texts, {"passed": True}, True, None)


def endpoint_body(url, **kw):
    return {"note": WEB_NOTE, "backend": "endpoint", "base_url": url, **kw}


def api_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/login":
            for method in route.methods - {"HEAD"}:
                out.append((method, route.path.replace("{run_id}", "20240101-000000-aaaaaa")))
    return sorted(out)


# -- the reliability suite (issue 26): a note for `poxi draft` ----------------------------------------------------

CLI_NOTE = "临江县农业农村局党组2024年度民主生活会。查摆的问题：1. 理论学习不深入，全年中心组学习9次。2. 联系群众不够。"
