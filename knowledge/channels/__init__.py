"""Conversations and channels: the assistant panel's threads and their context, and how
DML behaves in each channel (watched channels).

This is the package's public entry point: code outside it imports only these names.
"""

from .assistant_threads import AssistantThreads, ThreadContext
from .question_shape import MIN_QUESTION_WORDS, looks_like_question

__all__ = ["AssistantThreads", "ThreadContext", "looks_like_question", "MIN_QUESTION_WORDS"]
