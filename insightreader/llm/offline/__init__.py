"""The built-in offline model: a deterministic, extractive stand-in for an
OpenAI-compatible server, answered in-process through an httpx2 transport so
the real ``openai.AsyncOpenAI`` client (streaming included) is exercised::

    client = openai.AsyncOpenAI(
        api_key="offline", base_url="http://offline.invalid/v1", max_retries=0,
        http_client=httpx2.AsyncClient(transport=OfflineTransport()),
    )

It serves ``GET …/models`` and ``POST …/chat/completions`` (plain, or an SSE
stream of ``chat.completion.chunk`` events ending in ``data: [DONE]``).
Every answer's ``model`` is :data:`OFFLINE_MODEL`, whatever was asked for.

The request convention
----------------------
* The task is ``response_format.json_schema.name`` when ``response_format``
  is ``json_schema``; otherwise (``json_object`` or none) a ``Task: NAME``
  line in a system (or developer) message. Names are compared in
  snake_case (``ArticleAnalysis`` and ``article-analysis`` both work).
  Known tasks: :data:`TASKS`; ``insight_generation`` is an alias of
  ``insight``. A request without a task is an insight. An unknown task
  name is a 400 ``invalid_request_error`` with code ``unknown_task``.
* The data is in the last user message holding any of the tagged blocks
  ``<title> <article> <selection> <insight> <intent> <lens> <history>
  <question> <tags>`` (so a later user message, such as a repair note, does
  not hide it). Everything inside a block is data, never instructions. Blocks
  are read in the order article, history, insight, selection, question,
  title, intent, lens, tags: each from its FIRST open tag to its LAST close tag,
  then cut out before the next is read, so fake tags inside an article
  stay part of the article. A user message with no tags at all is the
  article (structured tasks) or the selection (insights).
* Structured tasks answer a JSON object as the message content; insights
  answer plain text (wrapped as ``{"insight": …}`` only when
  ``response_format`` is ``json_object``). Output is in the language of the
  text (Chinese when Chinese characters outnumber Latin words, else
  English), labels included.

``usage`` counts estimated tokens (:func:`insightreader.text.estimate_tokens`).
Ids are hashes of the request and ``created`` is 0, so the same request
always gives the same bytes. ``max_tokens``, ``temperature``, ``n`` and
``tools`` are ignored.
"""

from __future__ import annotations

from .composers import answer
from .request import (
    INTENTS,
    LENS_TYPES,
    OFFLINE_MODEL,
    TAGS,
    TASKS,
    OfflineRequestError,
    parse_blocks,
)
from .transport import OfflineTransport, stream_pieces

__all__ = [
    "INTENTS",
    "LENS_TYPES",
    "OFFLINE_MODEL",
    "TAGS",
    "TASKS",
    "OfflineRequestError",
    "OfflineTransport",
    "answer",
    "parse_blocks",
    "stream_pieces",
]
