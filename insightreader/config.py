"""The one place that reads configuration.

Precedence, strongest first: command-line flags, ``INSIGHTREADER_<SECTION>__<KEY>``
environment variables, ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, the TOML file,
the built-in defaults below (which the shipped ``config.toml`` repeats, key by key).
Everything is validated once, at start; a misspelt key or a bad value is a
:class:`ConfigError` whose message names the key and the value.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

ENV_PREFIX = "INSIGHTREADER_"
#: ``INSIGHTREADER_*`` variables that are not settings of the server's configuration.
OTHER_ENV_NAMES = frozenset(
    {
        "INSIGHTREADER_ADMIN_USERNAME",  # first administrator, created at start
        "INSIGHTREADER_ADMIN_PASSWORD",
        "INSIGHTREADER_CLIENT_CONFIG",  # the command-line client's own file
        "INSIGHTREADER_SERVER",  # the command-line client's server and API token
        "INSIGHTREADER_TOKEN",
    }
)
DEFAULT_CONFIG_FILE = "config.toml"


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the key and the value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    bind: str = "127.0.0.1:8000"
    graceful_timeout: float = Field(10.0, ge=0)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    read_timeout: float = Field(30.0, gt=0)
    metrics_token: str = ""

    @field_validator("metrics_token")
    @classmethod
    def _hard_to_guess(cls, value: str) -> str:
        if value and len(value.encode()) < 16:
            raise ValueError("must be at least 16 bytes (or empty: /metrics needs no token)")
        return value

    #: Peers (IPs or CIDR networks) whose ``X-Forwarded-For`` names the client.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT")
        return value


class DatabaseSettings(_Section):
    path: Path = Path("data/insightreader.db")
    #: ``postgresql://…``: run on PostgreSQL instead of the SQLite file at ``path``.
    url: str = ""
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    busy_timeout: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _postgresql(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected empty (SQLite at database.path) or postgresql://…")
        return value

    @property
    def label(self) -> str:
        """The database for messages: the file, or the URL without its password."""
        if not self.url:
            return str(self.path)
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class AuthSettings(_Section):
    secret: str = ""
    access_token_lifetime: int = Field(900, ge=10)
    refresh_token_lifetime: int = Field(14 * 24 * 3600, ge=60)
    ticket_lifetime: int = Field(60, ge=5)
    open_registration: bool = False
    max_failed_logins: int = Field(5, ge=1)
    lockout_window: int = Field(900, ge=1)
    token_use_flush_interval: float = Field(60.0, gt=0)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value.encode()) < 32:
            raise ValueError("must be at least 32 bytes (or empty to generate one)")
        return value


class LLMSettings(_Section):
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    model: str = "gpt-4o-mini"
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    requests_per_minute: int = Field(0, ge=0)
    tokens_per_minute: int = Field(0, ge=0)
    structured_output: Literal["auto", "json_schema", "json_object", "text"] = "auto"
    context_tokens: int = Field(16000, ge=1000)
    max_chunks_per_article: int = Field(64, ge=1)

    @property
    def offline(self) -> bool:
        return not self.api_key


class TaskSettings(_Section):
    max_concurrency: int = Field(4, ge=1, le=256)
    max_attempts: int = Field(3, ge=1)
    max_pending_per_user: int = Field(100, ge=1)
    timeout: float = Field(300.0, gt=0)
    result_ttl: int = Field(7 * 24 * 3600, ge=0)
    daily_token_budget: int = Field(0, ge=0)
    #: Seconds a process holds a running task without renewing its lease (PostgreSQL).
    lease: float = Field(30.0, ge=1)


class LibrarySettings(_Section):
    max_articles_per_user: int = Field(10_000, ge=1)
    max_bytes_per_user: int = Field(500_000_000, ge=1)
    fetch_allow_private: bool = False
    fetch_timeout: float = Field(20.0, gt=0)
    fetch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)


class WebhookSettings(_Section):
    #: Seconds before the first retry of a failed delivery; each retry waits about twice as long.
    retry_initial: float = Field(5.0, gt=0)
    #: Seconds a delivery is retried for, at least, before it is given up.
    retry_for: float = Field(3600.0, gt=0)
    #: Seconds a receiver has to answer one delivery.
    timeout: float = Field(10.0, gt=0)


class SSESettings(_Section):
    heartbeat: float = Field(15.0, gt=0)
    retention: int = Field(24 * 3600, ge=60)
    queue_size: int = Field(1000, ge=10)
    max_connections_per_user: int = Field(10, ge=1)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    llm: LLMSettings = LLMSettings()
    tasks: TaskSettings = TaskSettings()
    library: LibrarySettings = LibrarySettings()
    sse: SSESettings = SSESettings()
    webhooks: WebhookSettings = WebhookSettings()
    log: LogSettings = LogSettings()


class _Layer(PydanticBaseSettingsSource):
    """A fixed mapping as a settings source (the config file, the OPENAI_* variables)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def _openai_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    llm = {
        key: environ[name]
        for key, name in (("api_key", "OPENAI_API_KEY"), ("base_url", "OPENAI_BASE_URL"))
        if environ.get(name)
    }
    return {"llm": llm} if llm else {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


#: Keys whose values are never shown (in a section, or any key named like them);
#: ``database.url`` may carry a password.
SECRET_KEYS = frozenset({"secret", "api_key", "metrics_token", "password", "token", "url"})
_SECRET_SUFFIXES = ("_secret", "_password", "_token", "_key")


def is_secret_key(name: str) -> bool:
    """Whether the value of a key named ``name`` (the part after the last dot) is a secret."""
    name = name.lower()
    return name in SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def _shown(key: str, value: Any) -> str:
    """``value`` as an error message may show it: a secret's value (also one inside a
    table given in its place) is replaced by its length."""
    if is_secret_key(key.rpartition(".")[2]):
        length = len(value) if isinstance(value, (str, bytes)) else None
        return "(hidden)" if length is None else f"(hidden, {length} characters)"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{name!r}: {_shown(str(name), item)}" for name, item in value.items())
        return "{" + inner + "}"
    return repr(value)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key} = {_shown(key, err['input'])}: {err['msg']}")
    return "; ".join(parts)


def _check_env_names(environ: Mapping[str, str]) -> None:
    """pydantic-settings silently ignores an ``INSIGHTREADER_*`` variable that names no
    section (``INSIGHTREADER_TASKZ__X``, ``INSIGHTREADER_SERVER_BIND``); a misspelt key
    inside a known section is already refused by the section's ``extra="forbid"``."""
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in OTHER_ENV_NAMES:
            continue
        section = name[len(ENV_PREFIX) :].lower().partition("__")[0]
        if section not in Settings.model_fields:
            raise ConfigError(
                f"configuration error: unknown environment variable {name!r}"
                f" (expected {ENV_PREFIX}<SECTION>__<KEY>, sections: {', '.join(Settings.model_fields)})"
            )


def admin_credentials() -> tuple[str, str]:
    """``INSIGHTREADER_ADMIN_USERNAME`` and ``_PASSWORD`` (empty when unset): the first
    administrator, created at start (``Accounts.bootstrap_admin`` checks them)."""
    return (
        os.environ.get("INSIGHTREADER_ADMIN_USERNAME", ""),
        os.environ.get("INSIGHTREADER_ADMIN_PASSWORD", ""),
    )


def load(
    path: Path | str | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings from ``path`` (or ./config.toml when present), the environment
    and ``overrides`` (command-line flags, as ``{"server": {"bind": "…"}}``)."""
    _check_env_names(os.environ)
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    file_data = _read_toml(Path(path)) if path is not None else {}
    openai_data = _openai_layer(os.environ)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                _Layer(settings_cls, openai_data),
                _Layer(settings_cls, file_data),
            )

    try:
        loaded = _Loaded(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc)}") from None
    except SettingsError as exc:  # an environment variable that does not parse (never shown)
        raise ConfigError(f"configuration error: {exc}") from None
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})
