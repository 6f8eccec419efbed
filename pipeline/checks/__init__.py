"""Checks on any text: findings with a reason and a span out.

copycheck (sentences shared with the corpus; textmatch and quotes under it), structure (the schema's
numbered sections, lengths, coverage of the note), audit (the genre: unsupported claims, remedy, defence, echo…;
auditrules and similarity under it), runner (all three on one text, as `poxi check` reports them).
A note comes as text or as a parsed `pipeline.note.Note`, read once.
"""
