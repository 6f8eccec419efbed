"""Helpers for the eval suite (tests/evaluation/): notes, drafts the gates pass, a scripted writer and endpoint."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from fakes import ScriptedChat, send_json

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

