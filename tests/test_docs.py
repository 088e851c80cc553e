"""The operator documentation and deployment files stay true: the configuration reference
is regenerated and compared, quoted files match their originals, every command and
option the docs show exists, links resolve, and the Dockerfile, Procfile, systemd unit
and proxy configurations have what they must have."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from insightreader import config as config_module
from insightreader.cli import main as cli_main
from insightreader.config import Settings
from tests.support.process import REPO, ServerProcess

DOCS = REPO / "docs"
DEPLOY = REPO / "deploy"
#: The pages of the operator's documentation (checked for commands and links).
OPERATOR_DOCS = ["deploy.md", "backup.md", "upgrading.md", "llm-providers.md", "configuration.md"]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- the configuration reference --------------------------------------------------------------


def test_configuration_reference_is_what_config_toml_generates() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert _generator().render() == page, "run: python scripts/config_reference.py"


def test_the_generator_checks_and_fails_when_out_of_date(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "scripts/config_reference.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    generator = _generator()
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    changed = generator.render(text.replace("max_concurrency = 4", "max_concurrency = 6"))
    assert "| `tasks.max_concurrency` | `6` |" in changed and changed != generator.render()
    with pytest.raises(SystemExit, match="no comment"):
        generator.render(text.replace("# Tasks running at once.\n", ""))
    with pytest.raises(SystemExit, match="disagree"):
        generator.render(text.replace("[sse]\n", "[sse]\n# Not a setting.\nbogus = 1\n"))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else repr(value)


def test_every_section_and_key_of_config_toml_is_in_the_reference() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    shipped = tomllib.loads((REPO / "config.toml").read_text(encoding="utf-8"))
    assert set(shipped) == set(Settings.model_fields)
    for section, values in shipped.items():
        assert f"## `[{section}]`" in page
        assert f"`INSIGHTREADER_{section.upper()}__<KEY>`" in page
        for key, value in values.items():
            row = next((line for line in page.splitlines() if line.startswith(f"| `{section}.{key}` |")), None)
            assert row is not None, f"{section}.{key} is not in docs/configuration.md"
            assert f"| `{_toml(value)}` |" in row, (row, value)
            assert row.rstrip().endswith("|") and len(row.split(" | ")) >= 4
    for name in config_module.OTHER_ENV_NAMES:
        assert f"`{name}`" in page


# --- files quoted in the docs, and what each must have ----------------------------------------


@pytest.mark.parametrize(
    ("doc", "file"),
    [
        ("deploy.md", "nginx.conf"),
        ("deploy.md", "Caddyfile"),
        ("deploy.md", "insightreader.service"),
        ("backup.md", "litestream.yml"),
    ],
)
def test_deploy_files_are_quoted_verbatim(doc: str, file: str) -> None:
    text = (DEPLOY / file).read_text(encoding="utf-8")
    assert text in (DOCS / doc).read_text(encoding="utf-8"), f"docs/{doc} no longer quotes deploy/{file} as it is"


def test_the_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("INSIGHTREADER_", "OPENAI_")):
            monkeypatch.delenv(name)
    settings = config_module.load(DEPLOY / "config.toml")
    assert settings.server.bind == "127.0.0.1:8000"  # only the proxy reaches it
    assert settings.database.path == Path("/var/lib/insightreader/insightreader.db")
    assert settings.auth.open_registration is False


def test_the_systemd_unit_runs_the_server_as_its_own_user_and_lets_it_drain() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "insightreader.service").read_text(encoding="utf-8"))
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["serve", "--config"]
    assert service["User"] not in ("root", "0")
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > Settings().server.graceful_timeout + 5
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "insightreader"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def _nginx_location(conf: str, pattern: str) -> str:
    start = conf.index(f"location {pattern}")
    return conf[start : conf.index("}", start)]


def test_nginx_passes_the_event_stream_unbuffered_and_logs_no_query_string() -> None:
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    stream = _nginx_location(conf, "~ ^/api/v1/(sse/analysis-notifications|events)$")
    for route in ("/api/v1/sse/analysis-notifications", "/api/v1/events"):
        assert re.fullmatch(r"^/api/v1/(sse/analysis-notifications|events)$", route)
    assert "proxy_buffering off;" in stream and "gzip off;" in stream
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", stream)
    assert timeout is not None
    seconds = int(timeout[1]) * {"s": 1, "m": 60, "h": 3600}[timeout[2]]
    assert seconds > 4 * Settings().sse.heartbeat
    log_format = conf[conf.index("log_format") : conf.index(";", conf.index("log_format"))]
    assert "$uri" in log_format and "$request " not in log_format and "$request_uri" not in log_format
    assert "ssl_certificate " in conf and "return 301 https://" in conf
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size is not None and int(size[1]) * 1024 * 1024 > Settings().server.max_body_bytes
    assert "deny all;" in _nginx_location(conf, "= /metrics")


def test_caddy_flushes_the_stream_and_keeps_tokens_out_of_its_log() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert "flush_interval -1" in caddyfile
    assert "delete ticket" in caddyfile and "delete token" in caddyfile
    assert not re.search(r"^\s*encode\b", caddyfile, re.MULTILINE)  # no compression


def test_litestream_replicates_the_database_the_example_configuration_names() -> None:
    text = (DEPLOY / "litestream.yml").read_text(encoding="utf-8")
    path = tomllib.loads((DEPLOY / "config.toml").read_text())["database"]["path"]
    assert f"  - path: {path}\n" in text and "replicas:" in text and "- url: s3://" in text


# --- Dockerfile and Procfile -----------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(instr.upper(), rest.strip()) for instr, _, rest in (line.partition(" ") for line in logical)]


def test_dockerfile_essentials() -> None:
    steps = _dockerfile()
    instructions = [i for i, _ in steps]
    args = lambda name: [a for i, a in steps if i == name]  # noqa: E731
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any("ca-certificates" in a and "apt-get install" in a for a in args("RUN"))
    users = args("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    assert instructions.index("USER") < instructions.index("CMD")
    assert any("/data" in a for a in args("VOLUME"))
    assert "8000" in " ".join(args("EXPOSE")).split()
    env = " ".join(args("ENV"))
    assert "INSIGHTREADER_DATABASE__PATH=/data/insightreader.db" in env
    assert "INSIGHTREADER_SERVER__BIND=0.0.0.0:8000" in env
    (health,) = args("HEALTHCHECK")
    assert "/healthz" in health and '"python"' in health and "curl" not in health
    assert json.loads(args("CMD")[-1])[:2] == ["insightreader", "serve"]
    # what the image is built from is there, and .dockerignore keeps it in
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    for copy in args("COPY"):
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), source
            assert source not in ignored, f".dockerignore excludes {source}, which the image needs"


def _healthcheck_argv() -> list[str]:
    (health,) = [a for i, a in _dockerfile() if i == "HEALTHCHECK"]
    argv = json.loads(health[health.index("CMD") + 3 :].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_the_docker_health_check_command_asks_a_live_server(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    port = server.url.rpartition(":")[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTREADER_")}

    def check() -> int:
        run = subprocess.run(
            _healthcheck_argv(),
            env={**env, "INSIGHTREADER_SERVER__BIND": f"0.0.0.0:{port}"},
            capture_output=True,
            timeout=30,
        )
        return run.returncode

    assert check() == 0
    server.stop()
    assert check() != 0


def test_procfile_runs_the_server_on_the_platforms_port() -> None:
    assert (REPO / "Procfile").read_text(encoding="utf-8") == "web: insightreader serve --bind 0.0.0.0:$PORT\n"


# --- every command shown exists ----------------------------------------------------------------


def _code_lines(text: str) -> Iterator[str]:
    """The lines of fenced code blocks, continuation lines joined."""
    inside, joined = False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, joined = not inside, ""
            continue
        if not inside:
            continue
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        yield joined + line
        joined = ""


def _commands(line: str) -> Iterator[list[str]]:
    """The argument lists given to an ``insightreader`` executable on a line."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        tokens = line.split()
    for i, token in enumerate(tokens):
        if os.path.basename(token.split("=")[-1]) != "insightreader" or i + 1 >= len(tokens):
            continue
        following = tokens[i + 1]
        if (i and tokens[i - 1].startswith("-")) or not re.fullmatch(r"[a-z][a-z-]*", following):
            continue  # a user, group, container or image name
        if os.path.basename(following) == "insightreader":
            continue
        yield tokens[i + 1 :]


def _check_command(argv: list[str], where: str) -> None:
    command: click.Command = cli_main
    path: list[str] = []
    while isinstance(command, click.Group) and len(argv) > len(path) and argv[len(path)] in command.commands:
        command = command.commands[argv[len(path)]]
        path.append(argv[len(path)])
    assert path, f"{where}: `insightreader {' '.join(argv)}`: no such command"
    assert not isinstance(command, click.Group), f"{where}: `insightreader {' '.join(path)}` needs a subcommand"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    for token in argv[len(path) :]:
        if token in ("|", "&&", "||", ";", ">", ">>") or token.startswith(("#", "2>")):
            break
        if token.startswith("--"):
            assert token.split("=")[0] in options, f"{where}: `insightreader {' '.join(path)}` has no option {token}"


def _shown_commands() -> Iterator[tuple[str, list[str]]]:
    for name in OPERATOR_DOCS:
        for line in _code_lines((DOCS / name).read_text(encoding="utf-8")):
            for argv in _commands(line):
                yield f"docs/{name}", argv
    for name in ("insightreader.service", "Caddyfile", "nginx.conf"):
        for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
            for argv in _commands(line):
                yield f"deploy/{name}", argv
    for argv in _commands((REPO / "Procfile").read_text(encoding="utf-8")):
        yield "Procfile", argv
    cmd = json.loads([a for i, a in _dockerfile() if i == "CMD"][-1])
    yield "Dockerfile", cmd[1:]


def test_every_command_and_option_the_docs_show_exists() -> None:
    shown = list(_shown_commands())
    # the operator's commands are all shown somewhere
    for expected in ("admin stats", "admin retry-failed", "migrate --dry-run", "serve --config", "user create", "backup"):
        words = expected.split()
        assert any(argv[: len(words)] == words for _, argv in shown), expected
    for where, argv in shown:
        _check_command(argv, where)


def test_the_command_checker_notices_what_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        _check_command(["adminn", "stats"], "here")
    with pytest.raises(AssertionError, match="no option --sincee"):
        _check_command(["admin", "stats", "--sincee", "1h"], "here")
    _check_command(["admin", "retry-failed", "--since", "1h", "--dry-run"], "here")
    assert list(_commands("sudo -u insightreader /opt/x/bin/insightreader backup --config c.toml b.db")) == [
        ["backup", "--config", "c.toml", "b.db"]
    ]
    assert list(_commands("useradd --gid insightreader insightreader")) == []
    assert list(_commands("docker exec insightreader insightreader admin stats")) == [["admin", "stats"]]


# --- links --------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)}


@pytest.mark.parametrize("page", [*(f"docs/{name}" for name in OPERATOR_DOCS), "README.md"])
def test_links_resolve(page: str) -> None:
    source = REPO / page
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (source.parent / file).resolve() if file else source
        assert resolved.exists(), f"{page}: link to {target} leads nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page}: {target}: no such heading"


def test_readme_links_the_operator_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# InsightReader\n")
    for name in OPERATOR_DOCS:
        assert f"(docs/{name})" in readme, name


def _toml_blocks(text: str) -> Iterator[str]:
    yield from (m[1] for m in re.finditer(r"```toml\n(.*?)```", text, re.DOTALL))


def test_configuration_examples_in_the_docs_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("INSIGHTREADER_", "OPENAI_")):
            monkeypatch.delenv(name)
    blocks = list(_toml_blocks((DOCS / "llm-providers.md").read_text(encoding="utf-8")))
    assert len(blocks) >= 4
    for n, block in enumerate(blocks):
        path = tmp_path / f"example{n}.toml"
        path.write_text(block, encoding="utf-8")
        settings = config_module.load(path)  # every key exists and every value is accepted
        assert not settings.llm.offline or settings.llm.base_url.startswith("https://api.openai.com")
