"""Token estimates for admission control and for providers that report no usage.

Deliberately rough (no tokenizer dependency): about four characters per token for
alphabetic scripts, one token per CJK character.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from insightreader.text import estimate_tokens as estimate_text_tokens

#: Per-message overhead of the chat format (role, separators).
MESSAGE_OVERHEAD = 4
#: The ``max_tokens`` sent (and reserved) when a caller gives none.
DEFAULT_COMPLETION_ESTIMATE = 1024


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    return 2 + sum(
        MESSAGE_OVERHEAD + estimate_text_tokens(message.get("content") or "") for message in messages
    )


def estimate_request_tokens(messages: Iterable[Mapping[str, str]], max_tokens: int | None) -> int:
    """What a request may cost at most: its prompt plus its completion budget."""
    return estimate_prompt_tokens(messages) + (
        max_tokens if max_tokens is not None else DEFAULT_COMPLETION_ESTIMATE
    )
