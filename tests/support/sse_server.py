"""``python -m tests.support.sse_server --config PATH``: the test server plus a
``stream`` task type, whose deltas come in two parts around its gate — so a test
can reconnect while an insight is half written and then watch the rest arrive live.

Input: ``{"gate": NAME, "before": [deltas], "after": [deltas]}``; result
``{"text": all deltas joined}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from insightreader.engine import TaskContext, TaskType

from . import server
from .tasktypes import TEST_TASK_TYPES, _gate


async def run_stream(ctx: TaskContext) -> dict[str, Any]:
    before = list(ctx.task.input.get("before", []))
    after = list(ctx.task.input.get("after", []))
    for delta in before:
        await ctx.progress(delta)
    await _gate(ctx.task.input["gate"]).wait()
    for delta in after:
        await ctx.progress(delta)
        await asyncio.sleep(0)  # one delta per loop turn, as from an upstream stream
    return {"text": "".join(before + after)}


TEST_TASK_TYPES["stream"] = TaskType("stream", run_stream)

if __name__ == "__main__":
    server.main()
