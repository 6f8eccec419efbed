"""The section step with and without its grammar: speed, usable replies and audit-clean fields per mode.

    python -m evals.bench_grammar                       # the example note, every link, each mode once
    python -m evals.bench_grammar --notes a.txt --rounds 2

Modes, interleaved per link so a busy neighbour skews all alike:
- schema: the section JSON schema as response_format (llama-cpp-python compiles it to a grammar);
- json: plain JSON mode, the reply validated against the same patterns afterwards;
- json_t07: plain JSON mode at temperature 0.7 (what a regeneration without a grammar would send).
Per mode it prints seconds per call, generation tokens per second, replies that parse, fields that follow the
contract (links), and links whose own words the audit and copy check pass (as first written). Uses the embedded model, uncached.
"""

import argparse
import statistics
import time
from pathlib import Path

from evals.bench_draft import DEFAULT_NOTES, note_text
from pipeline.checks.audit import Auditor
from pipeline.drafting.links import link_openings, link_prefix, section_schema, validate_section
from pipeline.drafting.links import tail_failures as _tail_failures
from pipeline.drafting.loop import parse_json
from pipeline.drafting.plan import plan_sections, section_roots
from pipeline.config import load_config
from pipeline.checks.copycheck import CopyIndex
from pipeline.corpus.samples import DimensionTagger
from pipeline.model.client import make_chat
from pipeline.note.reader import parse_note
from pipeline.prompts import load_prompt

MODES = ("schema", "json", "json_t07")


def requests(note) -> list[tuple[dict, dict, list[str]]]:
    """({listed: messages}, schema, link openings) for each link of each planned section of a note, as the
    chain builds them: one call per link (the roots are listed in the prompt only for a request without the
    grammar)."""
    problems = [{"title": p.title, "facts": p.facts, "text": p.text} for p in note.problems]
    tagger, out = DimensionTagger(), []
    for number, spec in enumerate(plan_sections(problems, tagger), 1):
        own = [problems[n - 1] for n in spec["problems"]] or problems[:3]
        prefixes = [link_prefix(p["text"]) for p in own] if spec["problems"] else [
            link_prefix("、".join(p["title"] for p in own), 40)]
        openings = link_openings(prefixes, number, note.subject)
        roots = section_roots(tagger.roots[spec["dimension"]], len(openings))
        for opening, link_roots in zip(openings, roots):
            messages = {listed: load_prompt("section").render(unit=note.unit or "本单位", year=note.year or "本",
                                                              meeting=note.meeting or "民主生活会", subject=note.subject,
                                                              voice=note.voice, dimension=spec["dimension"].replace("/", "和"),
                                                              problems=[opening], roots=[link_roots], listed=listed, angles=[])
                        for listed in (False, True)}
            out.append((messages, section_schema([opening], [link_roots]), [opening]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", nargs="*", type=Path, default=DEFAULT_NOTES[:1])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    config = load_config()
    chat = make_chat(config)
    copy_index = CopyIndex.load(config.corpus, config.cache / "copyindex")
    named = [r for rs in DimensionTagger().roots.values() for r in rs]
    rows = {m: {"seconds": [], "tps": [], "parsed": 0, "calls": 0, "fields": 0, "valid": 0, "clean": 0} for m in MODES}
    try:
        for path in args.notes:
            note = parse_note(note_text(path))
            auditor = Auditor(config.corpus, note=note)
            for round_ in range(args.rounds):
                for messages, schema, openings in requests(note):
                    for mode in MODES:
                        kwargs = {"schema": schema} if mode == "schema" else {"json_mode": True}
                        if mode == "json_t07":
                            kwargs.update(temperature=0.7, seed=config.seed + round_ + 1)
                        start = time.perf_counter()
                        reply = chat.complete(messages[mode != "schema"], max_tokens=80 + 60 * len(openings), **kwargs)
                        row = rows[mode]
                        row["calls"] += 1
                        row["seconds"].append(time.perf_counter() - start)
                        row["tps"].append(reply.completion_tokens / max(reply.seconds, 1e-6))
                        row["fields"] += len(openings)
                        try:
                            links = validate_section(parse_json(reply.text), schema)
                        except ValueError:
                            continue
                        row["parsed"] += 1
                        row["valid"] += sum(1 for link in links if link)
                        failures = _tail_failures(links, {}, openings, [], [], named, note.text, auditor, copy_index)
                        row["clean"] += sum(1 for link in links if link) - len(failures)
                    print(f"  {path.stem}: link done", flush=True)
    finally:
        chat.close()
    print("\nmode       calls  s/call (median)  gen tok/s  replies parsed  fields valid  fields clean")
    for mode, r in rows.items():
        print(f"{mode:10} {r['calls']:5d}  {statistics.median(r['seconds']):15.1f}  {statistics.median(r['tps']):9.1f}  "
              f"{r['parsed']:6d}/{r['calls']:<7d}  {r['valid'] / max(1, r['fields']):12.0%}  {r['clean'] / max(1, r['fields']):12.0%}")


if __name__ == "__main__":
    main()
