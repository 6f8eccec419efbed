"""The rubric grader: a strong model scores each eval draft against evals/rubric.yaml, 1–5 per criterion.

The rubric (in Chinese) holds the criteria, the prompt and, per criterion, the genre-audit kinds that
speak to the same thing; `agreement` reports how often the judge and the deterministic audit agree.
The reply is a JSON object validated against the rubric (every criterion, an integer 1–5, a one-line
reason) and retried a bounded number of times with the error fed back; then the draft is marked
unjudged with the last reply attached. Replies are cached like the drafts (pipeline/cache.py).

Left out: gating. The judge informs; no score ever fails a case or the suite.
"""

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.errors import InputError, ModelError
from pipeline.prompts import Prompt

DEFAULT_RUBRIC = PROJECT_ROOT / "evals" / "rubric.yaml"
ATTEMPTS = 3  # the first request and two retries with the validation error fed back


@dataclass(frozen=True)
class Criterion:
    id: str
    name: str
    description: str
    audit_kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rubric:
    criteria: tuple[Criterion, ...]
    pass_score: int  # a score at or above it counts as "meets the criterion" when compared with the audit
    prompt: Prompt
    version: str

    def schema(self) -> dict:
        """JSON schema of a verdict: the prompt's contract, the endpoint's constraint and the validator's."""
        one = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                 "reason": {"type": "string"}},
               "required": ["score", "reason"], "additionalProperties": False}
        return {"type": "object", "properties": {c.id: one for c in self.criteria},
                "required": [c.id for c in self.criteria], "additionalProperties": False}

    def render(self, note: str, draft: str) -> list[dict]:
        example = json.dumps({c.id: {"score": 4, "reason": "……"} for c in self.criteria}, ensure_ascii=False)
        criteria = [{"id": c.id, "name": c.name, "description": c.description} for c in self.criteria]
        return self.prompt.render(criteria=criteria, note=note, draft=draft, example=example)


def load_rubric(path: str | Path | None = None) -> Rubric:
    """Read and validate the rubric file; problems raise InputError naming the file."""
    path = Path(path or DEFAULT_RUBRIC)
    try:
        raw = path.read_text(encoding="utf-8")
        data = yaml.safe_load(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"评分标准文件「{path}」无法读取：{str(exc).splitlines()[0]}") from None
    try:
        criteria = tuple(Criterion(str(c["id"]), str(c["name"]), " ".join(str(c["description"]).split()),
                                   tuple(c.get("audit_kinds") or ())) for c in data["criteria"])
        pass_score = int(data.get("pass_score", 4))
        version = f"{data.get('version', 1)}+{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
        prompt = Prompt("judge", version, str(data["system"]), str(data["user"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"评分标准文件「{path}」格式不对（需要 criteria: [{{id, name, description}}]、system、user）：{exc}") from None
    if not criteria or len({c.id for c in criteria}) != len(criteria) or not 1 <= pass_score <= 5:
        raise InputError(f"评分标准文件「{path}」的 criteria 应非空且 id 不重复，pass_score 在 1–5 之间。")
    return Rubric(criteria, pass_score, prompt, version)


def parse_verdict(text: str, rubric: Rubric) -> dict:
    """{criterion id: {"score": 1–5, "reason": one line}}; ValueError (in Chinese) names what is wrong."""
    body = re.sub(r"^\s*```(?:json)?|```\s*$", "", text.strip()).strip()
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        try:
            data = json.loads(body[start : end + 1]) if 0 <= start < end else None
        except ValueError:
            data = None
    if not isinstance(data, dict):
        raise ValueError("输出不是一个 JSON 对象")
    out = {}
    for c in rubric.criteria:
        item = data.get(c.id)
        if not isinstance(item, dict):
            raise ValueError(f"缺少 {c.id} 一项（应为 {{\"score\": 1–5, \"reason\": \"一句理由\"}}）")
        score = item.get("score")
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise ValueError(f"{c.id} 的 score 应是 1 到 5 的整数，收到 {json.dumps(score, ensure_ascii=False)}")
        reason = " ".join(str(item.get("reason") or "").split())
        if not reason:
            raise ValueError(f"{c.id} 缺少一句理由（reason）")
        out[c.id] = {"score": score, "reason": reason[:120]}
    return out


def judge_draft(chat, rubric: Rubric, note: str, draft: str, attempts: int = ATTEMPTS) -> dict:
    """One draft's verdict: {"scores": {...}, "attempts": n} or {"error": why, "last": reply, "attempts": n}."""
    messages = rubric.render(note, draft)
    reply, error = "", ""
    for attempt in range(1, attempts + 1):
        try:
            reply = chat.complete(messages, json_mode=True, schema=rubric.schema(), max_tokens=800, temperature=0.0).text
        except ModelError as exc:
            return {"error": f"评分模型出错：{exc}", "last": "", "attempts": attempt}
        try:
            return {"scores": parse_verdict(reply, rubric), "attempts": attempt}
        except ValueError as exc:
            error = str(exc)
        # the retry changes the request: the bad reply and what is wrong with it go back to the model
        messages = [*messages, {"role": "assistant", "content": reply},
                    {"role": "user", "content": f"上面的输出不合格：{error}。请重新输出，只输出符合格式的 JSON。"}]
    return {"error": f"评分模型 {attempts} 次输出都不合格：{error}", "last": reply[:1000], "attempts": attempts}


def judge_entries(entries: list[dict], chat, rubric: Rubric, *, workers: int = 1, progress=None) -> None:
    """Add entry["judge"] to every drafted entry (drafts that failed to be written are left out)."""
    todo = [e for e in entries if e.get("draft")]

    def one(entry):
        entry["judge"] = judge_draft(chat, rubric, entry["note"], entry["draft"])
        if progress:
            verdict = entry["judge"].get("error") or " ".join(f"{k} {v['score']}" for k, v in entry["judge"]["scores"].items())
            progress(f"  评分 {entry['id']}：{verdict}")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, todo))


def judge_summary(entries: list[dict], rubric: Rubric) -> dict:
    """Mean score per criterion, drafts judged and unjudged, and agreement with the audit.

    Agreement: per draft and criterion with audit kinds, the judge's "meets" (score >= pass_score) against
    the audit's (no finding of those kinds); drafts without an audit are left out of it.
    """
    judged = [e for e in entries if (e.get("judge") or {}).get("scores")]
    means = {c.id: round(sum(e["judge"]["scores"][c.id]["score"] for e in judged) / len(judged), 2) if judged else None
             for c in rubric.criteria}
    per, agree_all, total_all = {}, 0, 0
    for c in rubric.criteria:
        agree = total = 0
        for e in judged:
            counts = (e.get("audit") or {}).get("counts")
            if counts is None or not c.audit_kinds:
                continue
            total += 1
            agree += (e["judge"]["scores"][c.id]["score"] >= rubric.pass_score) == (sum(counts.get(k, 0) for k in c.audit_kinds) == 0)
        per[c.id] = {"pairs": total, "agree": agree, "rate": round(agree / total, 3) if total else None}
        agree_all, total_all = agree_all + agree, total_all + total
    return {"judged": len(judged), "unjudged": sum(1 for e in entries if e.get("judge") and not e["judge"].get("scores")),
            "means": means, "agreement": {"pairs": total_all, "agree": agree_all,
                                          "rate": round(agree_all / total_all, 3) if total_all else None, "criteria": per}}
