"""Run records: one JSON file per draft run under `<home>/runs/<run id>/record.json`.

A record holds the note, the model and settings (never the API key), prompt versions, the parsed note,
the plan, each section with its retrieved ids, every model call's tokens and time, and check results.
It is rewritten atomically after every step, so a run that dies half way can be resumed from it.
Every record read is validated (`record_problem`): a damaged one (cut short, edited, the wrong shapes) is
refused for resume with one Chinese line naming the file and what is wrong, and `list_runs` lists it as
"damaged" with that reason, never leaving it out. It stays where it is, for inspection.
While a run is going its process holds `<run id>/.lock` (an OS file lock, released even when the process
is killed): a second resume of the same run is refused, and a "running" record whose lock is free belongs
to a dead process and is listed as "interrupted".
Left out: pruning old records.
"""

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError
from pipeline.textio import write_json

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a folder name under runs/, never a path


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def check_run_id(run_id: str) -> str:
    """The run id itself, or InputError when it could name anything but a folder right under runs/."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or ".." in run_id:
        raise InputError(f"运行编号「{run_id}」不合法：只能由字母、数字和 - _ . 组成（可用 poxi runs 查看已有记录）。")
    return run_id


def _lock(run_dir: Path):
    """Hold the run's lock (a FileLock) or raise InputError: another process is running it."""
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / ".lock"), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(f"运行「{run_dir.name}」正在运行（另一个 poxi 进程正在写它），请等它结束后再续写。") from None
    return lock


def owner_alive(run_dir: Path) -> bool:
    """Whether some process holds the run's lock, i.e. the run is really going on."""
    from filelock import FileLock, Timeout

    if not (run_dir / ".lock").exists():
        return False
    lock = FileLock(str(run_dir / ".lock"), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


@dataclass
class Record:
    path: Path
    data: dict = field(default_factory=dict)
    lock: object = field(default=None, repr=False)  # the run's FileLock while this process runs it

    @classmethod
    def create(cls, runs_dir: Path, run_id: str, **fields) -> "Record":
        path = Path(runs_dir) / check_run_id(run_id) / "record.json"
        record = cls(path, {"run_id": run_id, "status": "running", "created": time.time(), "calls": [], **fields,
                            "owner": {"pid": os.getpid(), "started": time.time()}}, _lock(path.parent))
        record.save()
        return record

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> "Record":
        """A recorded run, to read; `update(status="running")` then locks it for this process to continue."""
        path = Path(runs_dir) / check_run_id(run_id) / "record.json"
        if not path.is_file():
            raise InputError(f"找不到运行记录「{run_id}」（{path}）。可用 poxi runs 查看已有记录。")
        data, problem = read_record(path)
        if problem:
            raise InputError(f"运行记录「{path}」已损坏（{problem}），无法续写：请去掉 --resume 重新起草"
                             f"（损坏的记录留在原处，可查看或删除）。")
        return cls(path, data)

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def update(self, **fields) -> None:
        if fields.get("status") == "running" and self.lock is None:  # resuming: nobody else may run it now
            self.lock = _lock(self.path.parent)
            fields["owner"] = {"pid": os.getpid(), "started": time.time()}
        self.data.update(fields)
        self.save()
        if self.lock is not None and fields.get("status", "running") != "running":  # done, failed, cancelled
            self.lock.release()
            self.lock = None

    def add_call(self, step: str, completion) -> None:
        """One model call, preceded by each attempt the model layer retried (Completion.attempts)."""
        for tried in getattr(completion, "attempts", None) or []:
            self.data["calls"].append({"step": step, "prompt_tokens": 0, "completion_tokens": 0,
                                       "seconds": tried.get("seconds", 0.0), "model": completion.model,
                                       "retried": True, "error": tried.get("error", "")})
        self.data["calls"].append({
            "step": step, "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "seconds": round(completion.seconds, 3), "model": completion.model,
        })
        self.save()

    def save(self) -> None:
        self.data["updated"] = time.time()
        write_json(self.path, self.data, indent=1)  # a temporary file of its own: two writers never share one


def add_failed_calls(runs_dir: Path, run_id: str, failed: list[dict]) -> None:
    """Append model calls that failed (TimedChat.failed: attempt, error, seconds) to a finished run's record."""
    if not failed:
        return
    path = Path(runs_dir) / check_run_id(run_id) / "record.json"
    data, problem = read_record(path)
    if problem:
        return  # never written (the run failed before its record) or damaged: nothing to add to
    data["calls"] += [{"step": "failed", "prompt_tokens": 0, "completion_tokens": 0, "model": data.get("model"),
                       "failed": True, **f} for f in failed]
    Record(path, data).save()


def read_record(path: Path) -> tuple[dict, str | None]:
    """(the record, None), or ({}, why it cannot be used) for a missing, unreadable or damaged one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "文件不存在"
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"无法读取：{getattr(exc, 'strerror', None) or type(exc).__name__}"
    except ValueError as exc:
        return {}, f"不是完整的 JSON（{exc.msg}，第 {exc.lineno} 行）" if hasattr(exc, "msg") else "不是完整的 JSON"
    problem = record_problem(data)
    return (data, None) if problem is None else ({}, problem)


NOTE_KEYS = ("unit", "year", "meeting", "subject", "voice")  # note_struct fields a section's prompt reads


def record_problem(data) -> str | None:
    """What makes `data` unusable as a run record, in Chinese; None when every part a resume reads has its shape.

    Example: record_problem({"note": "…", "status": "failed", "calls": [], "plan": [{…}], "sections": [{"bogus": 1}]})
    == "sections 第 1 项缺少 text 或 retrieved"
    """
    if not isinstance(data, dict):
        return "不是一个 JSON 对象"
    if not isinstance(data.get("note"), str) or not data["note"].strip():
        return "缺少 note（情况说明）"
    if not isinstance(data.get("status"), str):
        return "缺少 status"
    if not isinstance(data.get("created", 0), (int, float)) or not isinstance(data.get("check") or {}, dict):
        return "created 或 check 格式不对"
    calls = data.get("calls")
    if not isinstance(calls, list) or not all(
            isinstance(c, dict) and _count(c.get("prompt_tokens")) and _count(c.get("completion_tokens")) for c in calls):
        return "calls 不是调用列表"
    info = data.get("note_struct")
    if info:
        if not isinstance(info, dict) or any(not isinstance(info.get(k, 0), (str, type(None))) for k in NOTE_KEYS):
            return "note_struct 格式不对"
        problems = info.get("problems")
        if not isinstance(problems, list) or not problems or not all(
                isinstance(p, dict) and isinstance(p.get("title"), str) and isinstance(p.get("text"), str) for p in problems):
            return "note_struct 中的 problems 格式不对"
    plan = data.get("plan")
    if plan:
        if not isinstance(plan, list) or not all(
                isinstance(s, dict) and isinstance(s.get("dimension"), str) and isinstance(s.get("problems"), list)
                for s in plan):
            return "plan 格式不对"
        sections = data.get("sections")
        if not isinstance(sections, list) or len(sections) != len(plan):
            return "sections 与 plan 的条数不一致"
        for n, section in enumerate(sections, 1):
            if section is None:
                continue
            if not isinstance(section, dict) or not isinstance(section.get("text"), str) \
                    or not isinstance(section.get("retrieved"), list):
                return f"sections 第 {n} 项缺少 text 或 retrieved"
            if any(not isinstance(section.get(k, []), list) for k in ("titles", "tails", "roots", "attempts", "replaced")):
                return f"sections 第 {n} 项格式不对"
    return None


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def list_runs(runs_dir: Path) -> list[dict]:
    """Summaries of past runs, newest first: id, status, unit, created, passed; a damaged record is listed with
    status "damaged" and `error` saying why."""
    out = []
    for path in Path(runs_dir).glob("*/record.json"):
        data, problem = read_record(path)
        if problem:
            try:
                created = path.stat().st_mtime
            except OSError:
                created = 0
            out.append({"run_id": path.parent.name, "status": "damaged", "unit": "", "created": created,
                        "passed": None, "error": f"运行记录「{path}」已损坏（{problem}）"})
            continue
        status = data.get("status")
        if status == "running" and not owner_alive(path.parent):
            status = "interrupted"  # its process was killed: the lock went with it
        out.append({"run_id": data.get("run_id", path.parent.name), "status": status,
                    "unit": (data.get("note_struct") or {}).get("unit", ""), "created": data.get("created", 0),
                    "passed": (data.get("check") or {}).get("passed")})
    return sorted(out, key=lambda r: -r["created"])
