"""Workbench runs: one queue per kind of model, one shared embedded model server, runs kept per writer.

Drafts wait first-in-first-out in a lane: "embedded" (the one llama.cpp server this process starts on the
first embedded draft and keeps for the next ones; one draft at a time, it uses every core) or "endpoint"
(an OpenAI-compatible service; `concurrency` drafts at once). Each draft runs `chain.draft` in a thread
with its own cancel event, which the chain hands to every model call, so a cancel takes effect at once.
A run's events go into a buffer the page long-polls (a reloaded page replays it); a waiting run gets a
`queue` event (position, expected wait) whenever its lane moves. Who wrote a run is kept beside the
chain's record as `<home>/runs/<id>/web.json` ({"writer", "shared"}); a writer sees only their own runs
and shared ones.

Left out: queues and event buffers surviving a restart (a record left "running" by a dead server shows as
interrupted), priorities, quotas per writer.
"""

import heapq
import re
import sys
import threading
import time
import traceback
from collections import deque

from pipeline.errors import InputError, PoxiError
from pipeline.record import new_run_id
from pipeline.web.guard import read_owner, write_owner

RUN_ID = re.compile(r"^[\w.-]{1,80}$")
KEEP_LIVE = 5  # finished runs whose event buffers stay in memory
MAX_QUEUED = 20
GUESS_SECONDS = {"embedded": 180.0, "endpoint": 60.0}  # a draft's length before any has finished here
ACTIVE = ("queued", "running")


class Busy(InputError):
    """The queue is full (HTTP 409)."""


class NotFound(InputError):
    """No such run, or not this writer's (HTTP 404)."""


class Run:
    """One draft in this server process: its event buffer, status, cancel flag and result."""

    def __init__(self, run_id: str, note: str, model: str, lane: str, writer: str = "", config=None):
        self.id, self.note, self.model, self.lane, self.writer = run_id, note, model, lane, writer
        self.config, self.shared = config, False
        self.events: list[dict] = []
        self.status = "queued"
        self.result: dict | None = None
        self.cancel = threading.Event()
        self.cond = threading.Condition()
        self.queued_at = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self.queue: dict | None = None  # the latest queue event while waiting

    def push(self, event: dict) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def finish(self, status: str) -> None:
        with self.cond:
            self.status, self.ended, self.queue = status, time.time(), None
            self.events.append({"type": "finished", "status": status})
            self.cond.notify_all()

    def events_after(self, after: int, wait: float) -> list[dict]:
        with self.cond:
            if len(self.events) <= after and self.status in ACTIVE and wait > 0:
                self.cond.wait_for(lambda: len(self.events) > after or self.status not in ACTIVE, timeout=wait)
            return self.events[after:]

    def sections(self) -> list[str]:
        done = {e["index"]: e["text"] for e in self.events if e.get("type") == "section_done"}
        return [done[i] for i in sorted(done)]


class Runs:
    """Queues runs, runs them in threads, answers for live and recorded ones, owns the embedded model server.

    chat_factory(config) -> ChatModel and draft_fn replace the real ones in tests.
    """

    def __init__(self, config, chat_factory=None, draft_fn=None, concurrency: int = 4):
        self.config, self.chat_factory, self.draft_fn = config, chat_factory, draft_fn
        self.limits = {"embedded": 1, "endpoint": max(1, int(concurrency))}
        self.live: dict[str, Run] = {}
        self.queue: list[Run] = []  # waiting runs, oldest first
        self.took = {lane: deque(maxlen=5) for lane in self.limits}  # seconds of recent finished drafts
        self.lock = threading.Lock()
        self.server = None  # the embedded model's LocalServer, made by the first embedded draft
        self.server_lock = threading.Lock()

    # ---- queue ----
    def start(self, note: str, config, writer: str = "") -> Run:
        lane = "endpoint" if config.base_url else "embedded"
        model = config.model or ("内置本地模型" if lane == "embedded" else config.base_url)
        with self.lock:
            if len(self.queue) >= MAX_QUEUED:
                raise Busy(f"排队的起草任务已满（{MAX_QUEUED} 份），请稍后再试。")
            finished = [r.id for r in self.live.values() if r.status not in ACTIVE]
            for old in finished[: max(0, len(finished) - KEEP_LIVE)]:
                del self.live[old]  # its record stays on disk; only the event buffer goes
            run = Run(new_run_id(), note, model, lane, writer, config)
            write_owner(self.config.runs_dir / run.id, writer, False)
            self.live[run.id] = run
            self.queue.append(run)
            self._dispatch()
        return run

    def cancel(self, run_id: str, writer: str) -> Run:
        run = self.live.get(run_id)
        if run is None or run.writer != writer or run.status not in ACTIVE:
            raise NotFound(f"没有正在运行或排队的「{run_id}」。")
        with self.lock:
            if run.status == "queued":  # never started: leave the queue, nothing to keep
                self.queue.remove(run)
                run.cancel.set()
                run.push({"type": "step", "step": "cancel", "message": "已从队列中取消。"})
                run.finish("cancelled")
                self._dispatch()
                return run
        run.cancel.set()
        run.push({"type": "step", "step": "cancel", "message": "正在取消：已完成的部分会保留。"})
        return run

    def _dispatch(self) -> None:
        """Start what the lanes have room for, then tell every waiting run where it stands. Holds self.lock."""
        for lane, limit in self.limits.items():
            running = sum(1 for r in self.live.values() if r.lane == lane and r.status == "running")
            for run in [r for r in self.queue if r.lane == lane][: max(0, limit - running)]:
                self.queue.remove(run)
                run.status, run.started, run.queue = "running", time.time(), None
                threading.Thread(target=self._work, args=(run,), name=f"poxi-run-{run.id}", daemon=True).start()
        for run, info in self._estimates():
            if info != run.queue:
                run.queue = info
                run.push({"type": "queue", **info})

    def _estimates(self) -> list[tuple[Run, dict]]:
        """Position and expected wait of each waiting run: its lane's slots free up after the average draft time."""
        out, now = [], time.time()
        for lane, limit in self.limits.items():
            waiting = [r for r in self.queue if r.lane == lane]
            if not waiting:
                continue
            took = self.took[lane]
            mean = sum(took) / len(took) if took else GUESS_SECONDS[lane]
            running = [r for r in self.live.values() if r.lane == lane and r.status == "running"]
            slots = [max(mean - (now - r.started), mean * 0.1) for r in running] + [0.0] * (limit - len(running))
            heapq.heapify(slots)
            for k, run in enumerate(waiting):
                begins = heapq.heappop(slots)
                heapq.heappush(slots, begins + mean)
                out.append((run, {"position": k + 1, "running": len(running), "wait": round(begins)}))
        return out

    # ---- one draft ----
    def _work(self, run: Run) -> None:
        chat = None
        try:
            draft = self.draft_fn
            if draft is None:
                from pipeline.drafting.chain import draft
            from pipeline.deadline import Budget, TimedChat

            budget = Budget(run.config.draft_deadline, "本次起草", "POXI_DRAFT_DEADLINE")
            chat = TimedChat(self.chat_for(run), budget, on_wait=lambda seconds, left: run.push(
                {"type": "step", "step": "model", "message": f"等待模型回复：已 {seconds:.0f} 秒"
                 + (f"，本次起草最多还等 {left:.0f} 秒" if left is not None else "")}))
            result = draft(run.note, run.config, chat=chat, on_event=run.push, cancel=run.cancel, run_id=run.id)
            run.result = {"text": result.text, "sections": result.sections, "check": result.check,
                          "passed": result.passed, "stats": result.stats}
            status = "cancelled" if run.cancel.is_set() else "done"
        except PoxiError as exc:
            status = "cancelled" if run.cancel.is_set() else "failed"
            self._error(run, str(exc))
        except Exception as exc:  # a bug must end the run visibly, not kill the server
            traceback.print_exc(file=sys.stderr)
            status = "cancelled" if run.cancel.is_set() else "failed"
            self._error(run, f"起草时出现内部错误（{type(exc).__name__}：{exc}）。请把终端里的报错信息反馈给维护者。")
        finally:
            if chat is not None:
                chat.close()
                from pipeline.record import add_failed_calls

                add_failed_calls(self.config.runs_dir, run.id, chat.failed)
        with self.lock:
            if status == "done":
                self.took[run.lane].append(time.time() - run.started)
            run.finish(status)
            self._dispatch()

    def chat_for(self, run: Run):
        """The run's chat model. Embedded drafts all talk to one llama.cpp server, started on first call."""
        if self.chat_factory:
            return self.chat_factory(run.config)
        from pipeline.model.client import make_chat

        chat = make_chat(run.config)
        if not run.config.base_url:
            chat.server = _SharedServer(self, run)  # instead of a server of its own, stopped with the chat
        return chat

    def shared_server(self, run: Run):
        """The one embedded model server: made and started on first need, restarted if it died."""
        from pipeline.model.server import local_server

        with self.server_lock:
            if self.server is None:
                self.server = local_server(self.config)
            if not (self.server.process and self.server.process.poll() is None):
                run.push({"type": "step", "step": "model", "message": "正在启动内置模型（首次需拼合约 1.1 GB 权重，约需 1 分钟）"})
            return self.server.start()  # a no-op while it runs

    def close(self) -> None:
        """Cancel what runs or waits and stop the embedded model server (the app is shutting down)."""
        with self.lock:
            for run in list(self.live.values()):
                run.cancel.set()
        with self.server_lock:
            if self.server is not None:
                self.server.stop()

    @staticmethod
    def _error(run: Run, message: str) -> None:
        last = run.events[-1] if run.events else {}
        if not (last.get("type") == "error" and last.get("message") == message):
            run.push({"type": "error", "message": message})

    # ---- reading runs, per writer ----
    def owner(self, run_id: str) -> dict:
        run = self.live.get(run_id)
        if run is not None:
            return {"writer": run.writer, "shared": run.shared}
        return read_owner(self.config.runs_dir / run_id)

    def visible(self, run_id: str, writer: str) -> bool:
        owner = self.owner(run_id)
        return owner["writer"] == writer or owner["shared"]

    def record(self, run_id: str) -> dict | None:
        """The run's record; a damaged one as {"status": "damaged", "error": why}, so it is shown, not hidden."""
        from pipeline.record import read_record

        path = self.config.runs_dir / run_id / "record.json"
        if not path.exists():
            return None
        data, problem = read_record(path)
        return {"status": "damaged", "error": f"运行记录已损坏（{problem}）"} if problem else data

    def live_run(self, run_id: str, writer: str) -> Run | None:
        """The live run, if any, after checking the id and that this writer may read it (NotFound if not)."""
        if not RUN_ID.match(run_id):
            raise InputError("运行编号不合法。")
        if not self.visible(run_id, writer):
            raise NotFound(f"找不到运行记录「{run_id}」。")
        return self.live.get(run_id)

    def detail(self, run_id: str, writer: str) -> dict:
        run = self.live_run(run_id, writer)
        record = self.record(run_id) or {}
        if run is None and not record:
            raise NotFound(f"找不到运行记录「{run_id}」。")
        owner = self.owner(run_id)
        out = {"id": run_id, "note": record.get("note", ""), "model": record.get("model"), "text": record.get("text") or "",
               "check": record.get("check"), "status": record.get("status", "unknown"), "live": run is not None,
               "writer": owner["writer"], "shared": owner["shared"], "mine": owner["writer"] == writer,
               "error": record.get("error")}  # why a run failed, or why its record is damaged
        if run is not None:
            out.update(note=run.note, status=run.status, events=len(run.events), queue=run.queue)
            if run.result:
                out.update(text=run.result["text"], check=run.result["check"])
            elif not out["text"]:
                out["text"] = "\n\n".join(run.sections())
        elif out["status"] == "running":
            out["status"] = "interrupted"  # written by a server that is gone
        return out

    def share(self, run_id: str, writer: str, shared: bool) -> dict:
        owner = self.owner(run_id) if RUN_ID.match(run_id) else {"writer": None}
        if owner["writer"] != writer or not (self.live.get(run_id) or self.record(run_id)):
            raise NotFound(f"找不到你的运行记录「{run_id}」。")
        write_owner(self.config.runs_dir / run_id, writer, shared)
        if run_id in self.live:
            self.live[run_id].shared = shared
        return {"id": run_id, "shared": shared}

    def history(self, writer: str, limit: int = 50) -> list[dict]:
        rows = {}
        paths = sorted(self.config.runs_dir.glob("*/record.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in paths:
            run_id = path.parent.name
            owner = self.owner(run_id)
            if not (owner["writer"] == writer or owner["shared"]):
                continue
            record = self.record(run_id) or {}
            status = record.get("status", "unknown")
            if status == "running" and run_id not in self.live:
                status = "interrupted"
            check = record.get("check") or {}
            rows[run_id] = {"id": run_id, "status": status, "time": path.stat().st_mtime, "writer": owner["writer"],
                            "shared": owner["shared"], "mine": owner["writer"] == writer,
                            "note": str(record.get("note", ""))[:60], "passed": check.get("passed")}
            if len(rows) >= limit:
                break
        for run in list(self.live.values()):  # a run may not have written its record yet
            if run.writer != writer and not run.shared:
                continue
            row = rows.setdefault(run.id, {"id": run.id, "note": run.note[:60], "passed": None, "time": run.queued_at,
                                           "writer": run.writer, "shared": run.shared, "mine": run.writer == writer})
            row["status"] = run.status
        return sorted(rows.values(), key=lambda r: r["time"], reverse=True)


class _SharedServer:
    """What a run's OpenAIChat sees as its server: start() hands out the shared one, stop() leaves it running."""

    def __init__(self, runs: Runs, run: Run):
        from pipeline.model.server import MODEL_ALIAS

        self.runs, self.run, self.alias = runs, run, MODEL_ALIAS

    def start(self):
        return self.runs.shared_server(self.run)

    def stop(self) -> None:
        pass
