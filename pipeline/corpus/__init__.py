"""The corpus and its index: sample documents in, retrieved items out.

samples (parse corpus/ into samples, items, chunks) -> embed (texts -> vectors) -> store (Chroma on disk or a
server, keyword index beside it; chroma reaches it within time limits) -> retrieve (hybrid search for a query or a
note's problems).
"""
