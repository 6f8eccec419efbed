"""Run records: one JSON file per draft run under `<home>/runs/<run id>/record.json`.

A record holds the note, the model and settings (never the API key), prompt versions, the parsed note,
the plan, each section with its retrieved ids, every model call's tokens and time, and check results.
It is rewritten atomically after every step, so a run that dies half way can be resumed from it.
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

from .errors import InputError

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
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            raise InputError(f"运行记录「{path}」已损坏，无法续写。") from None
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self.path)


def list_runs(runs_dir: Path) -> list[dict]:
    """Summaries of past runs, newest first: id, status, unit, created, passed."""
    out = []
    for path in Path(runs_dir).glob("*/record.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        status = data.get("status")
        if status == "running" and not owner_alive(path.parent):
            status = "interrupted"  # its process was killed: the lock went with it
        out.append({"run_id": data.get("run_id", path.parent.name), "status": status,
                    "unit": (data.get("note_struct") or {}).get("unit", ""), "created": data.get("created", 0),
                    "passed": (data.get("check") or {}).get("passed")})
    return sorted(out, key=lambda r: -r["created"])
