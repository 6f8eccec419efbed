"""`poxi draft` and `poxi runs` on a terminal: progress per step on stderr, the section being written
streamed, the draft on stdout or in a file, and the check report after it.

Left out: the drafting itself (drafting/chain.py) and the Word layout (export.py).
"""

import json
import os
import sys
import time
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import InputError, PoxiError
from pipeline.textio import decode_bytes, read_document

STEP_NAMES = {"read_note": "读取说明", "plan": "拟定提纲", "index": "语料索引", "section": "起草", "regenerate": "重写",
              "check": "检查"}


def read_note(source: str) -> str:
    """A note from a file path, or from stdin when source is "-"."""
    if source == "-":
        return decode_bytes(sys.stdin.buffer.read(), "标准输入")
    return read_document(source)


class Progress:
    """Prints chain events to stderr; streams section text when stderr is a terminal or `stream` is set."""

    def __init__(self, stream: bool | None = None, out=sys.stderr):
        self.out, self.start = out, time.perf_counter()
        self.stream = out.isatty() if stream is None else stream

    budget = None  # the draft's deadline.Budget: its time left is shown once it nears

    def _left(self) -> str:
        left = self.budget.left() if self.budget is not None else None
        if left is None or left > max(60.0, 0.25 * self.budget.seconds):
            return ""
        return f"（距本次起草的总时限还有 {max(0.0, left):.0f} 秒）"

    def waiting(self, seconds: float, left: float | None) -> None:
        """A model call that keeps the user waiting (deadline.TimedChat's on_wait)."""
        elapsed = time.perf_counter() - self.start
        limit = f"，本次起草最多还等 {left:.0f} 秒" if left is not None else ""
        print(f"[{elapsed:6.1f}s] 等待模型回复：已 {seconds:.0f} 秒{limit}。", file=self.out, flush=True)

    def __call__(self, event: dict) -> None:
        kind, elapsed = event["type"], time.perf_counter() - self.start
        if kind == "step":
            print(f"[{elapsed:6.1f}s] {STEP_NAMES.get(event['step'], event['step'])}：{event['message']}{self._left()}",
                  file=self.out, flush=True)
        elif kind == "section_start":
            print(f"[{elapsed:6.1f}s] 起草第 {event['index'] + 1} 条：{event['heading']}{self._left()}", file=self.out, flush=True)
        elif kind == "token" and self.stream:
            print(event["text"], end="", file=self.out, flush=True)
        elif kind == "section_done" and self.stream:
            print(file=self.out, flush=True)


def run_draft(config: Config, note_path: str, *, output: str | None = None, resume: str | None = None,
              as_json: bool = False, chat=None) -> int:
    """Draft, write, report. Exit 0 when the draft passes its checks, 1 when it is written but fails them;
    errors.EXIT_CODES for the rest (a time limit: 5, the record kept for --resume)."""
    from pipeline.drafting.chain import draft
    from pipeline.deadline import Budget, TimedChat
    from pipeline.model.client import constraint_of
    from pipeline.record import Record, add_failed_calls, new_run_id

    note = read_note(note_path)
    out = check_output(output) if output else None  # before any model call: a bad path must not cost a draft
    if resume:
        Record.open(config.runs_dir, resume)  # a damaged record fails now, before the model is reached
    progress = Progress()
    budget = Budget(config.draft_deadline, "本次起草", "POXI_DRAFT_DEADLINE")
    progress.budget = budget
    inner = chat
    if inner is None:
        from pipeline.model.client import make_chat

        inner = make_chat(config)
    constraint = constraint_of(inner)  # the first line: what the model is held to (probed once per endpoint)
    if constraint:
        print(f"模型：{getattr(inner, 'name', '')}；{constraint['summary']}", file=sys.stderr, flush=True)
    timed = TimedChat(inner, budget, on_wait=progress.waiting)
    run_id = resume or new_run_id()
    try:
        result = draft(note, config, chat=timed, on_event=progress, resume=resume, run_id=None if resume else run_id)
    except PoxiError as exc:
        if not isinstance(exc, InputError):  # a run that got under way: say how to pick it up again
            add_failed_calls(config.runs_dir, run_id, timed.failed)
            exc.args = (f"{exc}（运行记录已保存，可用 poxi draft 说明文件 --resume {run_id} 续写）",)
        raise
    finally:
        if chat is None:
            inner.close()
    add_failed_calls(config.runs_dir, run_id, timed.failed)
    for warning in result.warnings:
        print(f"注意：{warning}", file=sys.stderr)
    if out:
        try:
            if out.suffix.lower() == ".docx":
                from pipeline.export import font_note, write_docx

                write_docx(result.text, out)
                if note := font_note():
                    print(note, file=sys.stderr)
            else:
                out.write_text(result.text + "\n", encoding="utf-8")
        except (OSError, PoxiError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"无法写入「{out}」（{reason}）。初稿已保存在运行记录 {result.record_path} 的 text 字段里，"
                             f"可换一个路径后用 poxi draft 说明文件 --resume {result.run_id} -o 新路径 重新输出。") from None
        print(f"已写入：{out}", file=sys.stderr)
    if as_json:
        print(json.dumps({"run_id": result.run_id, "text": result.text, "passed": result.passed, "check": result.check,
                          "stats": result.stats, "record": str(result.record_path)}, ensure_ascii=False, indent=1))
    elif not output:
        print(result.text)
    _report(result)
    return 0 if result.passed else 1


def check_output(output: str) -> Path:
    """The output path, if a draft can be written there; InputError naming the fix otherwise."""
    out = Path(output)
    if out.is_dir():
        raise InputError(f"输出路径「{out}」是一个文件夹：请给出文件名，如 {out / '初稿.md'}。")
    if out.suffix.lower() not in (".md", ".txt", ".docx"):
        raise InputError(f"输出文件「{output}」的扩展名应为 .md、.txt 或 .docx。")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"输出文件「{out}」所在的文件夹「{folder}」不存在：请先创建它，或换一个路径。")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"没有权限写入「{out}」：请换一个路径。")
    return out


def _report(result) -> None:
    s, check = result.stats, result.check  # check is CheckResult.to_dict()
    copy, structure = check.get("copy", {}), check.get("structure", {})
    print(f"\n用时 {s['seconds']:.0f} 秒，调用模型 {s['calls']} 次，提示 {s['prompt_tokens']} / 生成 {s['completion_tokens']} tokens。",
          file=sys.stderr)
    print(f"检查：{'通过' if result.passed else '未通过'}；与范文雷同 {len(copy.get('copied', []))} 句"
          f"（重复文字 {copy.get('ratio', 0):.1%}）", file=sys.stderr)
    for problem in copy.get("problems", []) + structure.get("problems", []):
        print(f"  · {problem}", file=sys.stderr)
    print(f"运行记录：{result.record_path}（续写：poxi draft 说明文件 --resume {result.run_id}）", file=sys.stderr)


def run_runs(config: Config, as_json: bool = False) -> int:
    """`poxi runs`: past runs, newest first."""
    from pipeline.record import list_runs

    runs = list_runs(config.runs_dir)
    for r in runs:
        if r["status"] == "damaged":
            print(f"警告：{r['error']}，不能续写。", file=sys.stderr)
    if as_json:
        print(json.dumps(runs, ensure_ascii=False, indent=1))
        return 0
    if not runs:
        print("还没有运行记录。", file=sys.stderr)
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        verdict = {True: "通过", False: "未通过", None: "—"}[r["passed"]]
        print(f"{r['run_id']}  {when}  {r['status']:<9}  {verdict:<4}  {r['unit']}")
    return 0
