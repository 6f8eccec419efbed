"""Drafting: a parsed note in, a draft with its checks out.

roots (problem -> thinking), moves (argument frames filled under a grammar), fixes (model fields -> the genre's
sentences), chain (plan the sections, write each with its audit and copy check, assemble, record).
"""
