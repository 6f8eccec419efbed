"""Checks on any text: findings with a reason and a span out.

copycheck (sentences shared with the corpus; textmatch and quotes under it), structure (the schema's
numbered sections, lengths, coverage of the note), audit (the genre: unsupported claims, remedy, defence, echo…),
runner (all three on one text, as `poxi check` reports them).
"""
