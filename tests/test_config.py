"""Configuration: the shipped file, precedence (flag > INSIGHTREADER_* > OPENAI_* > file >
defaults), and refusing misspelt keys and bad values with a one-line message."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from insightreader import config
from tests.conftest import base_config
from tests.support.cli import clean_env, insightreader_argv, one_line_error, run_cli
from tests.support.process import REPO, ServerProcess, write_config

SHIPPED = REPO / "config.toml"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration variable from the developer's shell, and a working directory
    without a config.toml (load() would pick up ./config.toml)."""
    for name in list(os.environ):
        if name.upper().startswith(("INSIGHTREADER_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def section_models() -> dict[str, type[BaseModel]]:
    models = {}
    for name, field in config.Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        models[name] = field.annotation
    return models


# --- the shipped config.toml -------------------------------------------------------


def test_shipped_config_equals_builtin_defaults() -> None:
    assert config.load(SHIPPED) == config.Settings()


def test_no_file_means_builtin_defaults() -> None:
    settings = config.load()
    assert settings == config.Settings()
    assert settings.database.path == Path("data/insightreader.db")
    assert settings.server.max_body_bytes == 2 * 1024 * 1024
    assert settings.llm.offline


def test_shipped_config_lists_every_key_of_every_section() -> None:
    with SHIPPED.open("rb") as f:
        shipped = tomllib.load(f)
    models = section_models()
    assert set(shipped) == set(models)
    for name, model in models.items():
        assert set(shipped[name]) == set(model.model_fields), name
    # and the values are the defaults, key by key (not only after validation)
    defaults = config.Settings().model_dump(mode="json")
    for name, values in shipped.items():
        for key, value in values.items():
            assert value == defaults[name][key], f"{name}.{key}"


def test_every_key_in_shipped_config_has_a_comment_above() -> None:
    lines = SHIPPED.read_text().splitlines()
    keys = 0
    for number, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            keys += 1
            assert number > 0 and lines[number - 1].lstrip().startswith("#"), (
                f"config.toml line {number + 1} ({line.strip()}) has no comment above it"
            )
    assert keys == sum(len(m.model_fields) for m in section_models().values())


def test_reads_config_toml_in_the_working_directory(tmp_path: Path) -> None:
    write_config(tmp_path / "config.toml", {"tasks": {"max_concurrency": 7}})
    assert config.load().tasks.max_concurrency == 7


# --- precedence ----------------------------------------------------------------------


@pytest.fixture
def file_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "file.toml",
        {
            "server": {"bind": "127.0.0.1:1111", "max_body_bytes": 8192},
            "llm": {"base_url": "http://file.invalid/v1", "model": "file-model", "api_key": "file-key"},
            "tasks": {"max_concurrency": 2},
        },
    )


def test_file_beats_defaults(file_config: Path) -> None:
    settings = config.load(file_config)
    assert settings.server.bind == "127.0.0.1:1111"
    assert settings.llm.model == "file-model"
    assert settings.tasks.max_concurrency == 2
    assert settings.tasks.max_attempts == config.TaskSettings().max_attempts


def test_env_beats_file_and_keeps_the_other_keys(file_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTREADER_SERVER__BIND", "127.0.0.1:2222")
    monkeypatch.setenv("INSIGHTREADER_TASKS__MAX_CONCURRENCY", "9")
    monkeypatch.setenv("INSIGHTREADER_AUTH__OPEN_REGISTRATION", "false")
    settings = config.load(file_config)
    assert settings.server.bind == "127.0.0.1:2222"
    assert settings.server.max_body_bytes == 8192  # same section, from the file
    assert settings.tasks.max_concurrency == 9  # coerced from the string
    assert settings.auth.open_registration is False
    assert settings.llm.model == "file-model"


def test_flag_beats_env(file_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTREADER_SERVER__BIND", "127.0.0.1:2222")
    settings = config.load(file_config, overrides={"server": {"bind": "127.0.0.1:3333"}})
    assert settings.server.bind == "127.0.0.1:3333"
    assert settings.server.max_body_bytes == 8192


def test_openai_variables_beat_the_file(file_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-env.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    settings = config.load(file_config)
    assert settings.llm.base_url == "http://openai-env.invalid/v1"
    assert settings.llm.api_key == "sk-from-openai-env"
    assert settings.llm.model == "file-model"


def test_insightreader_variables_beat_openai_variables(file_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-env.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    monkeypatch.setenv("INSIGHTREADER_LLM__BASE_URL", "http://insightreader-env.invalid/v1")
    settings = config.load(file_config)
    assert settings.llm.base_url == "http://insightreader-env.invalid/v1"
    assert settings.llm.api_key == "sk-from-openai-env"  # not overridden by an INSIGHTREADER_ one
    monkeypatch.setenv("INSIGHTREADER_LLM__API_KEY", "sk-from-insightreader-env")
    assert config.load(file_config).llm.api_key == "sk-from-insightreader-env"


def test_openai_api_key_alone_turns_the_offline_model_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.load().llm.offline
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = config.load()
    assert settings.llm.api_key == "sk-test"
    assert not settings.llm.offline
    monkeypatch.setenv("OPENAI_API_KEY", "")  # set but empty: as if unset
    assert config.load().llm.offline


# --- misspelt keys and bad values ------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"tasks": {"max_concurency": 5}}, "tasks.max_concurency"),
        ({"taskz": {"max_concurrency": 5}}, "taskz"),
        ({"server": {"bind": "127.0.0.1:8000", "port": 8000}}, "server.port"),
    ],
    ids=["misspelt-key", "misspelt-section", "unknown-key"],
)
def test_unknown_key_in_the_file_is_an_error(tmp_path: Path, sections: dict[str, Any], expected: str) -> None:
    path = write_config(tmp_path / "bad.toml", sections)
    with pytest.raises(config.ConfigError, match=re.escape(expected)):
        config.load(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("INSIGHTREADER_TASKS__MAX_CONCURENCY", "tasks.max_concurency"),
        ("INSIGHTREADER_TASKZ__MAX_CONCURRENCY", "INSIGHTREADER_TASKZ__MAX_CONCURRENCY"),
        # one underscore instead of two: pydantic-settings would ignore it silently
        ("INSIGHTREADER_TASKS_MAX_CONCURRENCY", "INSIGHTREADER_TASKS_MAX_CONCURRENCY"),
    ],
    ids=["misspelt-key", "misspelt-section", "single-underscore"],
)
def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch, name: str, expected: str) -> None:
    monkeypatch.setenv(name, "5")
    with pytest.raises(config.ConfigError, match=re.escape(expected)):
        config.load()


BAD_VALUES = [
    ("tasks", "max_concurrency", "lots"),
    ("tasks", "max_concurrency", 0),
    ("server", "bind", "localhost"),
    ("server", "max_body_bytes", 12),
    ("database", "synchronous", "SOMETIMES"),
    ("llm", "structured_output", "xml"),
    ("sse", "heartbeat", -1),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES, ids=[f"{s}.{k}={v}" for s, k, v in BAD_VALUES])
def test_bad_value_names_key_and_value(tmp_path: Path, section: str, key: str, value: Any) -> None:
    path = write_config(tmp_path / "bad.toml", {section: {key: value}})
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert f"{section}.{key}" in message and repr(value) in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("auth", "secret", "too-short-secret"), ("server", "metrics_token", "short-token"), ("auth", "secret", 12345),
     ("database", "url", "mysql://reader:pw-in-url@db/reading")],
)
def test_a_bad_secret_names_its_key_but_never_its_value(tmp_path: Path, section: str, key: str, value: Any) -> None:
    path = write_config(tmp_path / "bad.toml", {section: {key: value}})
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert f"{section}.{key}" in message and "hidden" in message, message
    assert str(value) not in message, message


def test_bad_value_from_the_environment_names_key_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTREADER_SERVER__MAX_BODY_BYTES", "huge")
    with pytest.raises(config.ConfigError, match=r"server\.max_body_bytes = 'huge'"):
        config.load()


# --- through the real command line -------------------------------------------------------


NO_PORT = ["--bind", "127.0.0.1:0"]
CLI_BAD_CONFIGS = [
    ("[tasks]\nmax_concurency = 5\n", NO_PORT, {}, ["tasks.max_concurency"]),
    ("[tasks]\nmax_concurrency = \"lots\"\n", NO_PORT, {}, ["tasks.max_concurrency", "'lots'"]),
    ("[server]\nbind = \"nowhere\"\n", [], {}, ["server.bind", "'nowhere'"]),
    ("", ["--bind", "nowhere"], {}, ["server.bind", "'nowhere'"]),
    ("[tasks\nmax_concurrency = 5\n", NO_PORT, {}, ["bad.toml", "line 1"]),
    ("", NO_PORT, {"INSIGHTREADER_TASKS__MAX_CONCURENCY": "5"}, ["tasks.max_concurency"]),
    ("", NO_PORT, {"INSIGHTREADER_SERVER_BIND": "127.0.0.1:0"}, ["INSIGHTREADER_SERVER_BIND"]),
    ("", NO_PORT, {"INSIGHTREADER_TASKS__MAX_ATTEMPTS": "0"}, ["tasks.max_attempts", "'0'"]),
]


@pytest.mark.parametrize(
    ("text", "args", "env", "expected"),
    CLI_BAD_CONFIGS,
    ids=[
        "misspelt-key",
        "bad-int",
        "bad-bind-in-file",
        "bad-bind-flag",
        "bad-toml",
        "env-misspelt-key",
        "env-single-underscore",
        "env-bad-value",
    ],
)
def test_serve_refuses_bad_configuration_with_one_line(
    tmp_path: Path, text: str, args: list[str], env: dict[str, str], expected: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_cli("serve", "--config", str(path), *args, cwd=tmp_path, env=env, timeout=15)
    message = one_line_error(result)
    for part in expected:
        assert part in message, message
    assert not (tmp_path / "data").exists()  # refused before touching the database


def test_serve_with_a_missing_config_file_fails(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert "nope.toml" in one_line_error(result)


def _serve(tmp_path: Path, name: str, args: list[str], env: dict[str, str]) -> ServerProcess:
    sections = base_config(tmp_path / name, server={"bind": "127.0.0.3:0"})
    path = write_config(tmp_path / f"{name}.toml", sections)
    server = ServerProcess(path, argv=[*insightreader_argv(), "serve", "--config", str(path), *args])
    server.env = clean_env(env)
    return server


@pytest.mark.parametrize(
    ("args", "env", "host"),
    [
        ([], {}, "127.0.0.3"),
        ([], {"INSIGHTREADER_SERVER__BIND": "127.0.0.2:0"}, "127.0.0.2"),
        (["--bind", "127.0.0.4:0"], {"INSIGHTREADER_SERVER__BIND": "127.0.0.2:0"}, "127.0.0.4"),
    ],
    ids=["file", "env-beats-file", "flag-beats-env"],
)
def test_real_serve_binds_where_precedence_says(
    tmp_path: Path, args: list[str], env: dict[str, str], host: str
) -> None:
    server = _serve(tmp_path, "srv", args, env)
    try:
        server.start()
        assert re.fullmatch(rf"http://{re.escape(host)}:\d+", server.url), server.url
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert server.terminate(timeout=30) == 0
    finally:
        server.stop()
