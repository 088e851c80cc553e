"""The LLM gateway: the only package that talks to the provider (and imports ``openai``)."""

from __future__ import annotations

from insightreader.llm.client import ClientTuning, LLMClient, LLMObserver
from insightreader.llm.result import Completion, Usage
from insightreader.llm.tokens import estimate_prompt_tokens, estimate_text_tokens

__all__ = [
    "ClientTuning",
    "Completion",
    "LLMClient",
    "LLMObserver",
    "Usage",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
]
