"""Run records: one JSON file per draft run under `<home>/runs/<run id>/record.json`.

A record holds the note, the model and settings (never the API key), prompt versions, the parsed note,
the plan, each section with its retrieved ids, every model call's tokens and time, and check results.
It is rewritten atomically after every step, so a run that dies half way can be resumed from it.
Left out: pruning old records.
"""

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class Record:
    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def create(cls, runs_dir: Path, run_id: str, **fields) -> "Record":
        record = cls(Path(runs_dir) / run_id / "record.json", {"run_id": run_id, "status": "running",
                                                                "created": time.time(), "calls": [], **fields})
        record.save()
        return record

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> "Record":
        path = Path(runs_dir) / run_id / "record.json"
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(f"找不到运行记录「{run_id}」（{path}）。可用 poxi runs 查看已有记录。") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"运行记录「{path}」已损坏，无法续写。") from None

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.save()

    def add_call(self, step: str, completion) -> None:
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
        out.append({"run_id": data.get("run_id", path.parent.name), "status": data.get("status"),
                    "unit": (data.get("note_struct") or {}).get("unit", ""), "created": data.get("created", 0),
                    "passed": (data.get("check") or {}).get("passed")})
    return sorted(out, key=lambda r: -r["created"])
