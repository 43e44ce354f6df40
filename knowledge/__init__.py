"""Knowledge: the store, the index, retrieval, answers. Knows nothing of Slack or ingest."""

__all__ = ["KnowledgeBase", "Settings", "DMLError"]


def __getattr__(name):
    # Lazy: `dml --help` must not pay for numpy, faiss or torch imports.
    if name == "KnowledgeBase":
        from .kb import KnowledgeBase

        return KnowledgeBase
    if name == "Settings":
        from .settings import Settings

        return Settings
    if name == "DMLError":
        from .errors import DMLError

        return DMLError
    raise AttributeError(name)
