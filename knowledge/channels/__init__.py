"""Conversations and channels: the assistant panel's threads and their context, and how
DML behaves in each channel (watched channels: auto-answer, experts, citable sources).

This is the package's public entry point: code outside it imports only these names.
"""

from .assistant_threads import AssistantThreads, ThreadContext
from .question_shape import MIN_QUESTION_WORDS, looks_like_question
from .watching import (
    MAX_CONFIDENCE,
    MAX_EXPERTS,
    MAX_SOURCES,
    ChannelConfig,
    ChannelConfigError,
    ChannelConfigs,
    checked_config,
)

__all__ = ["AssistantThreads", "ThreadContext", "ChannelConfig", "ChannelConfigs",
           "ChannelConfigError", "checked_config", "looks_like_question", "MAX_CONFIDENCE",
           "MAX_EXPERTS", "MAX_SOURCES", "MIN_QUESTION_WORDS"]
