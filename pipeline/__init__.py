"""poxi (剖析): situation note -> tailored 原因剖析 first draft, with copy and structure checks.

The public API, re-exported lazily so `import pipeline` (and `poxi --help`) stays instant.
"""

__version__ = "0.1.0"
__all__ = ["draft", "check_text", "load_corpus", "load_config", "Retriever", "make_chat"]

_HOMES = {"draft": "drafting.chain", "check_text": "checks.runner", "load_corpus": "corpus.samples",
          "load_config": "config", "Retriever": "corpus.retrieve", "make_chat": "model.client"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(name)
