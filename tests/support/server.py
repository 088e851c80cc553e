"""``python -m tests.support.server --config PATH``: the real server plus test task types."""

from __future__ import annotations

import asyncio
import sys

from insightreader import config, logs
from insightreader.errors import BackgroundFailure
from insightreader.server import serve
from insightreader.tasktypes import task_types

from .tasktypes import TEST_TASK_TYPES, configure


def main() -> None:
    path = sys.argv[sys.argv.index("--config") + 1]
    settings = config.load(path)
    logs.configure(settings.log)
    try:
        asyncio.run(serve(settings, {**task_types(settings), **TEST_TASK_TYPES}, configure=configure))
    except BackgroundFailure as exc:
        # As ``insightreader serve`` does: the traceback was logged when the part died.
        sys.exit(f"a background part died ({exc}); exiting to be restarted")


if __name__ == "__main__":
    main()
