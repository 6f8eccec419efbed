"""Are two eval runs' drafts byte for byte the same? For refactors that must not change behaviour.

    poxi eval --json out/before.json          # on the old code (served from the response cache)
    poxi eval --json out/after.json           # on the new code
    python -m evals.same_drafts out/before.json out/after.json

Prints each case as same / differs / missing and exits 1 when any case differs or is missing.
"""

import argparse
import json
import sys
from pathlib import Path


def drafts(path: Path) -> dict[tuple[str, int], str]:
    entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
    return {(e["id"], e.get("rep", 0)): e.get("draft") or "" for e in entries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = drafts(args.before), drafts(args.after)
    bad = 0
    for key in sorted(before.keys() | after.keys()):
        if key not in before or key not in after:
            verdict = "missing in " + ("before" if key not in before else "after")
        else:
            verdict = "same" if before[key] == after[key] else "differs"
        bad += verdict != "same"
        print(f"{key[0]:32} {verdict}")
    print(f"{len(before.keys() | after.keys()) - bad} same, {bad} not")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
