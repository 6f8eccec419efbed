"""Reading a situation note: text in, a `Note` out (unit, year, theme, voice and the problems it lists).

Used by the checks (coverage against the note) and by drafting. Left out: anything a model does.
"""
