"""Assembly: a section's heading and text, and the finished draft with its checks.

Deterministic: the heading is the thinking the links named, the text a numbered paragraph, the draft the
sections joined and checked once. Left out: writing the pieces (links.py, moves.py) and cleaning one model
field (fixes.py).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

CN_NUMBERS = "一二三四五六七八九十"


@dataclass
class DraftResult:
    text: str
    sections: list[dict]
    check: dict
    passed: bool
    record_path: Path
    stats: dict
    status: str = "done"  # "done" or "cancelled"
    run_id: str = ""
    warnings: list[str] = field(default_factory=list)


def section_heading(links: list[dict], most: int = 24) -> str:
    """The section's judgement: the thinking its links named, two when they differ and fit in `most`."""
    roots = list(dict.fromkeys(link["root"] for link in links))
    if len(roots) > 1 and len(roots[0]) + len(roots[1]) < most:
        return f"{roots[0]}，{roots[1]}"
    return roots[0]


def section_text(number: int, heading: str, body: str) -> str:
    return f"（{CN_NUMBERS[number - 1]}）{heading}。{body}"


def finish(run, sections: list, note, copy_index, cancelled: bool = False) -> DraftResult:
    """The finished sections joined and checked (structure, genre audit, copying) as one draft, against the
    parsed note and the copy index the chain already holds."""
    from pipeline.checks.runner import check_text

    t = time.perf_counter()
    done = [s for s in sections if s]
    text = "\n".join(s["text"] for s in done)
    check = check_text(text, corpus_dir=run.config.corpus, note=note, copy_index=copy_index).to_dict() if text else {}
    run.timed("check", time.perf_counter() - t)
    status = "cancelled" if cancelled else "done"
    return DraftResult(text, done, check, bool(check.get("passed")) and not cancelled, run.record.path, {},
                       status, run.record["run_id"])
