"""The same apps on another event loop or another ASGI server, for comparison only.

    python -m bench.other_servers LAGFILE --server uvicorn --loop uvloop insightreader --config c.toml
    python -m bench.other_servers LAGFILE --server uvicorn --loop uvloop ceiling --port 8200

``insightreader`` runs exactly what ``insightreader serve`` runs (``server.serve``:
the services, the app with its middleware, the drain) with only the HTTP server
swapped; ``ceiling`` is ``bench/ceiling.py``'s app. ``--server uvicorn`` is uvicorn
with httptools, as the original design runs; ``--loop uvloop`` runs the whole process
on uvloop. Hypercorn on the standard loop stays InsightReader's server: this only
answers how much of a figure is the HTTP server's and the loop's.

The loop's lag is sampled into LAGFILE (``bench/lagprobe.py``; the sampler is started
here, since a loop made by uvloop does not come from the policy the launcher sets).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from . import lagprobe

LOOPS = ("asyncio", "uvloop")
SERVERS = ("hypercorn", "uvicorn")


async def run_uvicorn(app: Any, bind: str, shutdown_trigger: Callable[[], Awaitable[None]] | None = None) -> None:
    import uvicorn

    host, _, port = bind.rpartition(":")
    config = uvicorn.Config(
        app, host=host, port=int(port), loop="none", http="httptools", lifespan="off",
        access_log=False, log_level="warning",
    )
    server = uvicorn.Server(config)
    if shutdown_trigger is not None:
        async def trigger() -> None:
            await shutdown_trigger()
            server.should_exit = True

        asyncio.get_running_loop().create_task(trigger())
    await server.serve()


async def insightreader(server: str, config_path: Path) -> None:
    from insightreader import config, logs
    from insightreader.tasktypes import task_types
    from insightreader.server import serve

    settings = config.load(config_path)
    logs.configure(settings.log)
    if server == "uvicorn":
        await serve(settings, task_types(settings),
                    http=lambda app, s, trigger: run_uvicorn(app, s.server.bind, trigger))
    else:
        await serve(settings, task_types(settings))


async def ceiling(server: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from .ceiling import app

    if server == "uvicorn":
        await run_uvicorn(app, f"127.0.0.1:{port}")
    else:
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        await serve(app, config)  # type: ignore[arg-type]


def run(main: Coroutine[Any, Any, None], loop: str, lag_file: str) -> None:
    async def sampled() -> None:
        lagprobe.start_sampler(lag_file)
        await main

    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(sampled())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lag_file")
    parser.add_argument("--server", choices=SERVERS, default="hypercorn")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    apps = parser.add_subparsers(dest="app", required=True)
    apps.add_parser("insightreader").add_argument("--config", type=Path, required=True)
    apps.add_parser("ceiling").add_argument("--port", type=int, default=8200)
    args = parser.parse_args()
    if args.app == "insightreader":
        app = insightreader(args.server, args.config)
    else:
        app = ceiling(args.server, args.port)
    run(app, args.loop, args.lag_file)


if __name__ == "__main__":
    main()
