"""Time limits above the model and the store: one for a whole draft, eval case or search.

`Budget` is a wall-clock limit started once. `TimedChat` wraps any ChatModel: each call gets a cancel event of
its own, set when the caller cancels or the budget runs out, which the model layer already honours at once
(OpenAIChat cuts the HTTP response). A budget that ran out, or a call that timed out on its own limit
(ModelTimeout), becomes DeadlineExceeded: not a ModelError, so the chain's one retry of a failed call does not
wait on a frozen service a second time. Failed calls are kept in `failed` for the run record, and a call that
keeps the user waiting is reported every `notice_every` seconds through `on_wait`.
`within` runs a function (a search) in a worker thread and gives up on it when the budget runs out.

Left out: the per-call limits themselves (model/guard.py `call_limit`, corpus/chroma.py's timeouts), which stay below.
"""

import threading
import time
from typing import Callable

from pipeline.errors import Cancelled, DeadlineExceeded, ModelTimeout

NOTICE_EVERY = 30.0  # seconds between "still waiting" lines while one model call runs


class Budget:
    """`seconds` from now (None or <= 0: no limit); `what` names the thing limited, `setting` how to raise it."""

    def __init__(self, seconds: float | None, what: str, setting: str):
        self.seconds = seconds if seconds and seconds > 0 else None
        self.what, self.setting = what, setting
        self.started = time.monotonic()

    def left(self) -> float | None:
        return None if self.seconds is None else self.seconds - (time.monotonic() - self.started)

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.what}超过了总时限 {self.seconds:.0f} 秒，已停止。"
                                f"可稍后重试，或设置 {self.setting} 放宽时限（0 表示不限）。")


class TimedChat:
    """A ChatModel whose calls end when `budget` does. Example: TimedChat(make_chat(config), Budget(900, …))."""

    def __init__(self, inner, budget: Budget, on_wait: Callable[[float, float | None], None] | None = None,
                 notice_every: float = NOTICE_EVERY):
        self.inner, self.budget, self.on_wait, self.notice_every = inner, budget, on_wait, notice_every
        self.name = getattr(inner, "name", "unknown")
        self.failed: list[dict] = []  # {"attempt", "error", "seconds"} per failed call, for the run record
        self.count = 0

    def __getattr__(self, name):
        """Anything else the chain asks of its model (enforces_schema, server …) is the wrapped model's."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def complete(self, messages, *, cancel: threading.Event | None = None, **kwargs):
        self.count += 1
        start = time.monotonic()
        if self.budget.expired():
            raise self._failed(self.budget.error(), start)
        own, done = threading.Event(), threading.Event()
        threading.Thread(target=self._watch, args=(cancel, own, done, start), name="poxi-deadline", daemon=True).start()
        try:
            return self.inner.complete(messages, cancel=own, **kwargs)
        except Cancelled as exc:
            if cancel is not None and cancel.is_set():
                raise self._failed(exc, start)
            raise self._failed(self.budget.error(), start) from None  # our event: the budget ran out
        except ModelTimeout as exc:  # the call's own limit: the service is hung; a retry would wait as long
            raise self._failed(DeadlineExceeded(str(exc)), start) from None
        except BaseException as exc:
            raise self._failed(exc, start)
        finally:
            done.set()

    def _watch(self, cancel, own: threading.Event, done: threading.Event, start: float) -> None:
        """Set `own` when the caller cancels or the budget runs out; report a long wait now and then."""
        notice = start + self.notice_every
        while not done.wait(0.05):
            if (cancel is not None and cancel.is_set()) or self.budget.expired():
                own.set()
                return
            now = time.monotonic()
            if self.on_wait is not None and now >= notice:
                notice += self.notice_every
                try:
                    self.on_wait(now - start, self.budget.left())
                except Exception:  # a broken progress display must not end the call
                    pass

    def _failed(self, exc: BaseException, start: float) -> BaseException:
        self.failed.append({"attempt": self.count, "error": str(exc) or type(exc).__name__,
                            "seconds": round(time.monotonic() - start, 3)})
        return exc

    def close(self) -> None:
        if hasattr(self.inner, "close"):
            self.inner.close()


def within(budget: Budget, fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs), or DeadlineExceeded once the budget runs out (the worker thread is left behind,
    a daemon: a frozen Chroma request cannot be interrupted from outside, only abandoned)."""
    if budget.seconds is None:
        return fn(*args, **kwargs)
    box: dict = {}

    def work():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="poxi-within", daemon=True)
    worker.start()
    worker.join(max(0.0, budget.left()))
    if worker.is_alive():
        raise budget.error()
    if "error" in box:
        raise box["error"]
    return box["result"]
