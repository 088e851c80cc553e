"""HTTP helpers for tests: a logged-in user, and bounded waits on task state."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

_names = itertools.count(1)
POLL = 0.02


class Api:
    """An ``httpx.AsyncClient`` bound to one user of one server."""

    def __init__(self, http: httpx.AsyncClient, token: str, username: str) -> None:
        self.http = http
        self.token = token
        self.username = username
        self.headers = {"Authorization": f"Bearer {token}"}

    def on(self, http: httpx.AsyncClient) -> Api:
        """The same user (same token) through another client, e.g. to a restarted server."""
        return Api(http, self.token, self.username)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.headers, **kw)

    async def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=json, headers={**self.headers, **(headers or {})}, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.put(path, json=json, headers=self.headers, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.patch(path, json=json, headers=self.headers, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.delete(path, headers=self.headers, **kw)

    async def submit(self, task_type: str, input: dict[str, Any], **extra: Any) -> httpx.Response:
        headers = extra.pop("headers", None)
        return await self.post(f"/api/v1/test/tasks/{task_type}", {"input": input, **extra}, headers=headers)

    async def submit_id(self, task_type: str, input: dict[str, Any], **extra: Any) -> str:
        """Submit a task that must be accepted as new (202); its ``task_id``."""
        response = await self.submit(task_type, input, **extra)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_status(self, task_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        """Poll until the task reaches one of ``statuses`` (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.task(task_id)
            if task["status"] in statuses:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {task['status']}, wanted {statuses}")
            await asyncio.sleep(POLL)

    async def all_tasks(self, **params: Any) -> list[dict[str, Any]]:
        """Every task of the user through ``GET /tasks``, following ``next_cursor``."""
        return await self.every("/api/v1/tasks", **params)

    async def every(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list endpoint (``/api/v1/tasks``, ``/api/v1/articles``),
        following ``next_cursor``."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):
            query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
            response = await self.get(path, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError(f"GET {path} never reached the last page")

    async def open_gate(self, name: str) -> None:
        response = await self.post(f"/api/v1/test/gates/{name}")
        assert response.status_code == 200, response.text

    async def stats(self) -> dict[str, Any]:
        return (await self.get("/api/v1/test/stats")).json()

    async def wait_running(self, count: int, timeout: float = 20) -> dict[str, Any]:
        """Poll until ``count`` test tasks are inside their run function."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if stats["current"] >= count:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"{stats['current']} tasks running, wanted {count}")
            await asyncio.sleep(POLL)


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Poll the async ``check`` until it returns something true (bounded); that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


async def register(http: httpx.AsyncClient, username: str | None = None, password: str = "correct horse battery") -> Api:
    username = username or f"user{next(_names)}"
    response = await http.post("/api/v1/auth/register", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return Api(http, response.json()["access_token"], username)
