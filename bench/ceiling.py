"""The ceiling: Quart + Hypercorn answering an authenticated JSON POST, nothing behind it.

    python -m bench.ceiling --port 8200

The same stack as InsightReader (Quart on Hypercorn, one asyncio loop) with the same
shape of work per request — verify an HS256 bearer token (PyJWT), parse and check
the JSON body, answer ``202 {"status": "pending", "task_id"}`` — and no store, no
engine, no events. What a submit could cost if it cost about one request. Users are
kept in memory; ``register`` / ``login`` / ``me`` take and give what InsightReader's do.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import jwt
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, request

SECRET = "ceiling-secret-0123456789abcdef0123456789"

app = Quart(__name__)
users: dict[str, dict[str, str]] = {}
passwords: dict[str, tuple[str, str]] = {}


def _error(status: int, code: str, message: str) -> tuple[dict[str, Any], int]:
    return {"error": {"code": code, "message": message}}, status


def _user() -> dict[str, str] | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        claims = jwt.decode(token.strip(), SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return users.get(claims.get("sub", ""))


@app.post("/api/v1/auth/register")
async def register() -> tuple[dict[str, Any], int]:
    data = await request.get_json(force=True)
    user = {"user_id": str(uuid.uuid4()), "username": data["username"],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    users[user["user_id"]] = user
    passwords[data["username"]] = (data["password"], user["user_id"])
    return user, 201


@app.post("/api/v1/auth/login")
async def login() -> tuple[dict[str, Any], int]:
    data = await request.get_json(force=True)
    password, user_id = passwords.get(data["username"], ("", ""))
    if not user_id or password != data["password"]:
        return _error(401, "unauthorized", "wrong username or password")
    token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 86400}, SECRET, algorithm="HS256")
    return {"access_token": token, "token_type": "bearer"}, 200


@app.get("/api/v1/auth/me")
async def me() -> tuple[dict[str, Any], int]:
    user = _user()
    return (user, 200) if user else _error(401, "unauthorized", "a bearer token is required")


@app.post("/api/v1/insights/generate-buttons")
async def generate_buttons() -> tuple[dict[str, Any], int]:
    user = _user()
    if user is None:
        return _error(401, "unauthorized", "a bearer token is required")
    data = await request.get_json(force=True, silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("selected_text"), str):
        return _error(422, "validation_error", "selected_text is required")
    return {"status": "pending", "task_id": str(uuid.uuid4())}, 202


def main() -> None:
    parser = argparse.ArgumentParser(description="Quart + Hypercorn, an authenticated POST, nothing behind it.")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
