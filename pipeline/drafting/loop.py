"""Write, audit, regenerate: the one loop every model-written piece of a draft goes through.

A step (a link's clause, a move's fill, the note's problems) hands `regenerate` a `write` function that sends
one call, checks the reply and says what still fails. The loop owns what a retry changes (another seed, a warm
temperature: the request, never the same one again), how many retries a piece and its section may spend, and
when to stop (clean, out of budget, cancelled). What to keep, cut or record is the step's: the loop never sees
a reply. Left out: the checks themselves (links.py, moves.py) and the model call (chain._Run.call).
"""

import json
import threading
from dataclasses import dataclass
from typing import Callable, Sized

RETRY_TEMPERATURE = 0.7  # a regeneration at temperature 0 would repeat the first reply whatever the seed


@dataclass
class Budget:
    """Regenerations a group of pieces may spend in all (a section's links share one)."""

    left: int


def retry_request(seed: int) -> dict:
    """What a regeneration changes in the request: its seed, and a temperature at which a seed matters."""
    return {"seed": seed, "temperature": RETRY_TEMPERATURE}


def regenerate(write: Callable[[int, dict], Sized | None], *, seed: int, extra: int,
               cancel: threading.Event | None = None, budget: Budget | None = None,
               announce: Callable[[Sized], None] | None = None) -> None:
    """Call `write(attempt, request)` until a reply is clean: attempt 0 with the request as configured
    (`request` is {}), then at most `extra` regenerations, each with `retry_request(seed + attempt)` merged in.
    `write` sends the call, keeps what passed and returns what still fails: empty when clean (the loop stops),
    None when the call or its reply was unusable (retried unannounced). Before a regeneration the loop stops
    when `cancel` is set or `budget` is spent; `announce(failures)` is told of each regeneration to come.

    Example: regenerate(lambda a, req: [] if a else ["repeat"], seed=7, extra=1) calls write(0, {}), then
    write(1, {"seed": 8, "temperature": 0.7}) and stops.
    """
    for attempt in range(1 + extra):
        if attempt and (cancel is not None and cancel.is_set() or budget is not None and not budget.left):
            break
        if attempt and budget is not None:
            budget.left -= 1
        failures = write(attempt, retry_request(seed + attempt) if attempt else {})
        if failures is not None and not failures:
            return
        if failures and announce and attempt < extra and (budget is None or budget.left):
            announce(failures)


def parse_json(text: str) -> dict:
    """The first JSON object in a model reply (code fences and chatter around it are tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("输出里没有 JSON 对象")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"JSON 语法错误：{exc.msg}（第 {exc.pos} 个字符）") from None
    if not isinstance(data, dict):
        raise ValueError("应输出一个 JSON 对象")
    return data
