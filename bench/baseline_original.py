"""The design InsightReader replaced, rebuilt from its design note, for comparison only.

Source: the asynchronous-architecture design note of 2025-10-22 (``TaskManager`` /
``SSEManager`` / ``AIService``; kept at ``../shared/000_9f7c8bf7f4b3c532.txt`` beside
the repository). Run by ``python -m bench`` in its own venv
(``bench/.venv-baseline``, from ``bench/requirements-baseline.txt``)::

    bench/.venv-baseline/bin/python bench/baseline_original.py --port 8100 \\
        --openai-base-url http://127.0.0.1:8001/v1 [--heartbeat 15] [--lag-file F]

Copied as the note has it:

- FastAPI + uvicorn (uvicorn's defaults: with ``uvicorn[standard]`` installed that is
  uvloop and httptools), one process;
- ``TaskManager``: a daemon thread running its own asyncio loop (``run_forever``);
  ``submit_task`` records the task in an in-memory dict and schedules
  ``_execute_task`` there with ``asyncio.run_coroutine_threadsafe``; statuses
  pending → running → completed/failed; ``task_started`` / ``task_completed`` /
  ``task_failed`` events;
- ``asyncio.Semaphore(10)`` around the task function, as in the note's
  "concurrency control" snippet (so ``task_started`` is sent when the task is
  scheduled, before it waits for a slot — the snippet wraps only ``task_func``);
- ``SSEManager``: per connection an ``asyncio.Queue(maxsize=100)``, a list of queues
  per user, ``send_event`` awaiting ``queue.put`` on each. It runs on the
  TaskManager's loop while the queues are read on uvicorn's loop, exactly as in the
  note: ``Queue.put`` from the other thread is not thread-safe, the reading loop is
  not woken and notices the event at its next wake-up (uvicorn ticks every 0.1 s).
  A send to a user without a stream logs a warning, as the note's code does (no
  logging is configured for it, so Python's last-resort handler writes it to stderr);
- ``AIService``: a new ``AsyncOpenAI(timeout=60.0, max_retries=2)`` per task, never
  closed, as the note's task functions do;
- the endpoints the benchmark drives: ``POST /api/v1/insights/generate-buttons`` and
  ``POST /api/v1/insights/generate`` (answer ``{"status": "pending", "task_id",
  "message"}`` at once), ``GET /api/v1/sse/analysis-notifications?token=`` (JWT in the
  query, as the note's frontend sends it), ``GET /api/v1/auth/me``
  (``Depends(get_current_active_user)``).

Where it deviates, and why:

- No database at all: users live in a dict (the original looked the user up in its
  database on every request; the benchmark's comparison is with "no persistence").
  ``/api/v1/auth/register`` and ``/api/v1/auth/login`` take the same JSON as
  InsightReader's so one harness drives both; passwords are hashed with PBKDF2 (login
  is not measured).
- The note does not show the SSE endpoint; this one is the usual ``StreamingResponse``
  over an async generator: a ``connected`` message, then the queue's events, a
  ``heartbeat`` after ``--heartbeat`` seconds without one.
- ``generate_follow_up_buttons`` asks for a JSON schema and validates the answer with
  pydantic (the note does not show it; InsightReader's task does the same work), and
  returns default buttons on any error, as the note's task function does.
- ``GET /api/v1/tasks/{task_id}`` reads the in-memory dict (to count tasks).
- ``--lag-file``: instrumentation only (off by default): samples the event-loop lag of
  uvicorn's loop and of the TaskManager's loop (``bench/lagprobe.py``).
- Logging: uvicorn at ``warning`` (no access log), as the benchmark runs InsightReader.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Literal, Optional

import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordBearer
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import lagprobe  # noqa: E402  (stdlib only; usable from this venv)

logger = logging.getLogger(__name__)


class Settings:
    OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "sk-baseline-0123456789")
    OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1")
    OPENAI_MODEL = os.environ.get("OPENAI_MODEL", "fake-model-1")
    SECRET_KEY = os.environ.get("BASELINE_SECRET", "baseline-secret-0123456789abcdef0123456789")
    HEARTBEAT = 15.0


settings = Settings()


# -- TaskManager / SSEManager, as in the note ------------------------------------------


class SSEManager:
    """SSE 连接管理器 (the note's code)."""

    def __init__(self) -> None:
        # user_id → List[asyncio.Queue]
        self.connections: Dict[str, List[asyncio.Queue]] = {}
        self._lock = asyncio.Lock()

    def add_connection(self, user_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=100)
        if user_id not in self.connections:
            self.connections[user_id] = []
        self.connections[user_id].append(queue)
        logger.info(f"[SSE] 新连接: user_id={user_id}, 总连接数={len(self.connections[user_id])}")
        return queue

    def remove_connection(self, user_id: str, queue: asyncio.Queue) -> None:
        if user_id in self.connections:
            try:
                self.connections[user_id].remove(queue)
                if not self.connections[user_id]:
                    del self.connections[user_id]
                logger.info(f"[SSE] 连接已移除: user_id={user_id}")
            except ValueError:
                pass

    async def send_event(self, user_id: str, event_type: str, data: dict) -> None:
        if user_id not in self.connections:
            logger.warning(f"[SSE] 用户无连接: user_id={user_id}")
            return
        event = {"type": event_type, "data": data}
        for queue in self.connections[user_id]:
            try:
                await queue.put(event)
            except asyncio.QueueFull:
                logger.warning(f"[SSE] 队列已满: user_id={user_id}")


class TaskManager:
    """异步任务管理器 (the note's code, with its concurrency-control snippet)."""

    def __init__(self) -> None:
        self.tasks: Dict[str, Dict] = {}
        self.sse_manager = SSEManager()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.max_concurrent_tasks = 10
        self.semaphore = asyncio.Semaphore(10)
        self._started = threading.Event()
        self.lag_file: Optional[str] = None

    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run_event_loop, daemon=True, name="TaskManager")
        self.thread.start()
        self._started.wait(10)  # not in the note: the first submit needs the loop

    def _run_event_loop(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        if self.lag_file:
            self.loop.call_soon(lagprobe.start_sampler, f"{self.lag_file}.taskmanager")
        logger.info("[TaskManager] 事件循环已启动")
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def submit_task(self, task_type: str, task_func: Callable, metadata: dict, *args: Any, **kwargs: Any) -> str:
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = {
            "task_id": task_id,
            "task_type": task_type,
            "status": "pending",
            "created_at": time.time(),
            "metadata": metadata,
        }
        asyncio.run_coroutine_threadsafe(
            self._execute_task(task_id, task_type, task_func, metadata, *args, **kwargs), self.loop  # type: ignore[arg-type]
        )
        logger.info(f"[TaskManager] 任务已提交: {task_id} ({task_type})")
        return task_id

    async def _execute_task(
        self, task_id: str, task_type: str, task_func: Callable, metadata: dict, *args: Any, **kwargs: Any
    ) -> None:
        user_id = metadata.get("user_id")
        try:
            self.tasks[task_id]["status"] = "running"
            if user_id:
                await self.sse_manager.send_event(
                    user_id, "task_started", {"task_id": task_id, "task_type": task_type, "metadata": metadata}
                )
            async with self.semaphore:
                result = await task_func(*args, **kwargs)
            self.tasks[task_id]["status"] = "completed"
            self.tasks[task_id]["result"] = result
            self.tasks[task_id]["completed_at"] = time.time()
            if user_id:
                await self.sse_manager.send_event(
                    user_id,
                    "task_completed",
                    {"task_id": task_id, "task_type": task_type, "result": result, "metadata": metadata},
                )
            logger.info(f"[TaskManager] 任务完成: {task_id}")
        except Exception as e:
            self.tasks[task_id]["status"] = "failed"
            self.tasks[task_id]["error"] = str(e)
            logger.error(f"[TaskManager] 任务失败: {task_id}, 错误: {str(e)}")
            if user_id:
                await self.sse_manager.send_event(
                    user_id, "task_failed", {"task_id": task_id, "task_type": task_type, "error": str(e)}
                )


task_manager = TaskManager()


# -- AIService: a new AsyncOpenAI client per task ----------------------------------------


class FollowUpButton(BaseModel):
    label: str
    prompt: str
    intent: Literal["explain", "challenge", "example", "connect", "deeper"]


class FollowUpButtons(BaseModel):
    buttons: List[FollowUpButton] = Field(min_length=1, max_length=6)


def get_default_buttons() -> list[dict[str, str]]:
    return [
        {"label": "Explain this simply", "prompt": "Explain the selected passage in simple terms.", "intent": "explain"},
        {"label": "Give me an example", "prompt": "Give a concrete example of the passage.", "intent": "example"},
        {"label": "What is the counterargument?", "prompt": "What is the strongest counterargument?", "intent": "challenge"},
    ]


class AIService:
    def __init__(self) -> None:
        self.client = AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL, timeout=60.0, max_retries=2
        )

    async def generate_insight(self, text: str, intent: str) -> str:
        response = await self.client.chat.completions.create(
            model=settings.OPENAI_MODEL,
            messages=[
                {"role": "system", "content": "你是一个洞察生成助手"},
                {"role": "user", "content": f"文本: {text}\n意图: {intent}"},
            ],
            temperature=0.7,
        )
        return response.choices[0].message.content or ""

    async def generate_follow_up_buttons(
        self, selected_text: str, insight: str, intent: str, conversation_history: list
    ) -> List[FollowUpButton]:
        response = await self.client.chat.completions.create(
            model=settings.OPENAI_MODEL,
            messages=[
                {"role": "system", "content": "Suggest 3 follow-up question buttons as JSON."},
                {"role": "user", "content": f"文本: {selected_text}\n洞察: {insight}\n意图: {intent}\n"
                                            f"历史: {json.dumps(conversation_history, ensure_ascii=False)}"},
            ],
            temperature=0.7,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "buttons", "schema": FollowUpButtons.model_json_schema()},
            },
        )
        return FollowUpButtons.model_validate_json(response.choices[0].message.content or "").buttons


async def generate_insight_task(selected_text: str, intent: str) -> dict:
    ai_service = AIService()
    insight = await ai_service.generate_insight(selected_text, intent)
    return {"insight": insight}


async def generate_buttons_task(selected_text: str, insight: str, intent: str, conversation_history: list) -> dict:
    try:
        ai_service = AIService()
        buttons = await ai_service.generate_follow_up_buttons(selected_text, insight, intent, conversation_history)
        return {"status": "completed", "buttons": [btn.model_dump() for btn in buttons]}
    except Exception as e:
        logger.error(f"按钮生成失败: {str(e)}")
        return {"status": "completed", "buttons": get_default_buttons(), "error": str(e)}


# -- auth: JWT, users in memory ------------------------------------------------------------


class User(BaseModel):
    id: str
    username: str
    password_hash: str
    created_at: str
    is_active: bool = True


users: Dict[str, User] = {}
users_by_name: Dict[str, User] = {}
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


def _hash(password: str, salt: bytes) -> str:
    return salt.hex() + ":" + hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000).hex()


def _user_from_token(token: Optional[str]) -> User:
    if not token:
        raise HTTPException(status_code=401, detail="Not authenticated")
    try:
        payload = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="Could not validate credentials")
    user = users.get(payload.get("sub", ""))
    if user is None:
        raise HTTPException(status_code=401, detail="Could not validate credentials")
    return user


async def get_current_active_user(token: Optional[str] = Depends(oauth2_scheme)) -> User:
    user = _user_from_token(token)
    if not user.is_active:
        raise HTTPException(status_code=400, detail="Inactive user")
    return user


# -- the app -------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if task_manager.lag_file:
        lagprobe.start_sampler(f"{task_manager.lag_file}.main")
    task_manager.start()
    yield


app = FastAPI(lifespan=lifespan)


class Credentials(BaseModel):
    username: str
    password: str


class InsightRequest(BaseModel):
    selected_text: str
    intent: str = "explain"


class ButtonsRequest(BaseModel):
    selected_text: str
    insight: str = ""
    intent: str = "explore"
    conversation_history: list = []


@app.post("/api/v1/auth/register", status_code=201)
async def register(data: Credentials) -> dict:
    if data.username.lower() in users_by_name:
        raise HTTPException(status_code=409, detail="The username is taken")
    user = User(
        id=str(uuid.uuid4()),
        username=data.username,
        password_hash=_hash(data.password, os.urandom(16)),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    users[user.id] = user
    users_by_name[user.username.lower()] = user
    return {"user_id": user.id, "username": user.username, "created_at": user.created_at}


@app.post("/api/v1/auth/login")
async def login(data: Credentials) -> dict:
    user = users_by_name.get(data.username.lower())
    if user is None or _hash(data.password, bytes.fromhex(user.password_hash.split(":")[0])) != user.password_hash:
        raise HTTPException(status_code=401, detail="Incorrect username or password")
    token = jwt.encode({"sub": user.id, "exp": int(time.time()) + 86400}, settings.SECRET_KEY, algorithm="HS256")
    return {"access_token": token, "token_type": "bearer"}


@app.get("/api/v1/auth/me")
async def me(current_user: User = Depends(get_current_active_user)) -> dict:
    return {"user_id": current_user.id, "username": current_user.username, "created_at": current_user.created_at}


@app.post("/api/v1/insights/generate", status_code=202)
async def generate_insight(request: InsightRequest, current_user: User = Depends(get_current_active_user)) -> dict:
    task_id = task_manager.submit_task(
        "insight_generation",
        generate_insight_task,
        {"user_id": current_user.id, "preview": request.selected_text[:50]},
        request.selected_text,
        request.intent,
    )
    return {"status": "pending", "task_id": task_id, "message": "任务已提交，请等待 SSE 通知"}


@app.post("/api/v1/insights/generate-buttons", status_code=202)
async def generate_buttons(request: ButtonsRequest, current_user: User = Depends(get_current_active_user)) -> dict:
    task_id = task_manager.submit_task(
        "button_generation",
        generate_buttons_task,
        {"user_id": current_user.id, "preview": request.selected_text[:50]},
        request.selected_text,
        request.insight,
        request.intent,
        request.conversation_history,
    )
    return {"status": "pending", "task_id": task_id, "message": "任务已提交，请等待 SSE 通知"}


@app.get("/api/v1/tasks/{task_id}")
async def get_task(task_id: str, current_user: User = Depends(get_current_active_user)) -> dict:
    task = task_manager.tasks.get(task_id)
    if task is None or task["metadata"].get("user_id") != current_user.id:
        raise HTTPException(status_code=404, detail="no such task")
    return task


def _message(event_type: str, data: dict) -> str:
    return f"event: {event_type}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@app.get("/api/v1/sse/analysis-notifications")
async def analysis_notifications(request: Request, token: str = Query(...)) -> StreamingResponse:
    user = _user_from_token(token)

    async def stream() -> AsyncIterator[str]:
        queue = task_manager.sse_manager.add_connection(user.id)
        try:
            yield _message("connected", {"user_id": user.id})
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=settings.HEARTBEAT)
                except asyncio.TimeoutError:
                    yield _message("heartbeat", {})
                    continue
                yield _message(event["type"], event["data"])
        finally:
            task_manager.sse_manager.remove_connection(user.id, queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def main() -> None:
    parser = argparse.ArgumentParser(description="The original design, for benchmarks only.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--openai-base-url", default=settings.OPENAI_BASE_URL)
    parser.add_argument("--model", default=settings.OPENAI_MODEL)
    parser.add_argument("--heartbeat", type=float, default=settings.HEARTBEAT)
    parser.add_argument("--lag-file", default=None, help="sample event-loop lag into FILE.main / FILE.taskmanager")
    args = parser.parse_args()
    settings.OPENAI_BASE_URL = args.openai_base_url
    settings.OPENAI_MODEL = args.model
    settings.HEARTBEAT = args.heartbeat
    task_manager.lag_file = args.lag_file
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
