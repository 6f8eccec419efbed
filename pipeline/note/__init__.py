"""Reading a situation note: text in, a `Note` out (unit, year, theme, voice and the problems it lists).

guard (instruction-like text removed), meeting (unit, year, theme, voice), reader (the problems; `parse_note`),
lexicon (the words they share). Used by the checks (coverage against the note) and by drafting.
Left out: anything a model does.
"""

from pipeline.note.guard import flag_clauses, strip_instructions
from pipeline.note.reader import Note, Problem, parse_note

__all__ = ["Note", "Problem", "parse_note", "strip_instructions", "flag_clauses"]
