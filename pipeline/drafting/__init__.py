"""Drafting: a parsed note in, a draft with its checks out.

In the order a draft goes: plan (problems -> dimensions -> the thinking each link may name, ranked by roots),
links (a link's contract, text and checks), moves (argument frames filled under a grammar), loop (the one
write-audit-regenerate loop both use), assembly and fixes (headings, paragraphs, the checked draft), chain
(`draft`: the run that ties them together and records it).
"""
