#!/usr/bin/env python3
"""Generate docs/configuration.md from the shipped config.toml.

Every section and key of config.toml, with its default, its environment variable, the
values it accepts (from the typed settings in insightreader/config.py) and the comment
above it. tests/test_docs.py regenerates the page and compares, so it never drifts:
after changing config.toml, run

    python scripts/config_reference.py           # rewrite docs/configuration.md
    python scripts/config_reference.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config.toml"
OUTPUT = REPO / "docs" / "configuration.md"

sys.path.insert(0, str(REPO))
from insightreader.config import ENV_PREFIX, OTHER_ENV_NAMES, Settings  # noqa: E402

#: The environment variables that are not settings, each with what it does.
OTHER_VARIABLES = {
    "OPENAI_API_KEY": "Same as `llm.api_key`; `INSIGHTREADER_LLM__API_KEY` wins over it.",
    "OPENAI_BASE_URL": "Same as `llm.base_url`; `INSIGHTREADER_LLM__BASE_URL` wins over it.",
    "INSIGHTREADER_ADMIN_USERNAME": "With `INSIGHTREADER_ADMIN_PASSWORD`: the administrator created on the"
    " first start when no user has that name ([deploy.md](deploy.md#the-first-administrator)).",
    "INSIGHTREADER_ADMIN_PASSWORD": "That administrator's password; used only to create the user, never"
    " logged, never changes an existing user.",
    "INSIGHTREADER_CLIENT_CONFIG": "The command-line client's own file ([client.md](client.md)).",
    "INSIGHTREADER_TOKEN": "A personal API token (`irt_…`) the Python client and the client commands"
    " use instead of a saved login ([api.md](api.md#api-tokens)).",
    "INSIGHTREADER_SERVER": "The server the client commands talk to with `INSIGHTREADER_TOKEN`.",
}

_SECTION = re.compile(r"^\[([A-Za-z0-9_]+)\]\s*$")
_KEY = re.compile(r"^([A-Za-z0-9_]+)\s*=")


@dataclass
class Key:
    name: str
    comment: list[str]
    default: Any = None


@dataclass
class Section:
    name: str
    comment: list[str]
    keys: list[Key] = field(default_factory=list)


def parse(text: str) -> tuple[list[str], list[Section]]:
    """The file's opening comment, and its sections with the comment above each key."""
    values = tomllib.loads(text)
    header: list[str] = []
    sections: list[Section] = []
    pending: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            pending.append(line.lstrip("#").strip())
        elif not line:
            if not sections and pending:  # the file's opening comment ends at a blank line
                header, pending = header + pending, []
        elif match := _SECTION.match(line):
            sections.append(Section(match[1], pending))
            pending = []
        elif match := _KEY.match(line):
            if not sections:
                raise SystemExit(f"config.toml line {number}: a key outside any section")
            if not pending:
                raise SystemExit(f"config.toml line {number}: {match[1]} has no comment above it")
            section = sections[-1]
            section.keys.append(Key(match[1], pending, values[section.name][match[1]]))
            pending = []
        else:
            raise SystemExit(f"config.toml line {number}: cannot read {line!r}")
    for section in sections:
        model = Settings.model_fields.get(section.name)
        if model is None:
            raise SystemExit(f"config.toml: [{section.name}] is not a section of the settings")
        known = set(model.annotation.model_fields)  # type: ignore[union-attr]
        listed = {k.name for k in section.keys}
        if known != listed:
            raise SystemExit(
                f"config.toml [{section.name}] and insightreader/config.py disagree:"
                f" missing {sorted(known - listed)}, unknown {sorted(listed - known)}"
            )
    return header, sections


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def accepted(section: str, key: str) -> str:
    """The values a key takes, from its type and bounds in insightreader/config.py."""
    info = Settings.model_fields[section].annotation.model_fields[key]  # type: ignore[union-attr]
    kind = info.annotation
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(f"`{toml_value(v)}`" for v in typing.get_args(kind))
    if kind is bool:
        return "`true` or `false`"
    names = {int: "integer", float: "number", str: "string", Path: "path"}
    if isinstance(kind, types.UnionType) or kind not in names:
        return "see the description"
    bounds = []
    for item in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                bounds.append(f"{sign} {getattr(item, attr)}")
    return names[kind] + (" " + ", ".join(bounds) if bounds else "")


def _code(text: str) -> str:
    """Text for a code span in a table cell (only the column break is escaped there)."""
    return text.replace("|", "\\|")


def _cell(text: str) -> str:
    """Comment text as a table cell: no HTML tags or column breaks by accident."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render(text: str | None = None) -> str:
    """docs/configuration.md for ``text`` (default: the shipped config.toml)."""
    header, sections = parse(CONFIG.read_text(encoding="utf-8") if text is None else text)
    missing = sorted(OTHER_ENV_NAMES - set(OTHER_VARIABLES))
    if missing:
        raise SystemExit(f"describe {missing} in OTHER_VARIABLES of scripts/config_reference.py")
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from config.toml by scripts/config_reference.py: edit config.toml,",
        "     then run `python scripts/config_reference.py`. tests/test_docs.py checks it. -->",
        "",
        "Every setting, as the shipped [`config.toml`](../config.toml) lists it with its",
        "built-in default. The file begins:",
        "",
        "```toml",
        *(f"# {line}".rstrip() for line in header),
        "```",
        "",
        "Where a value comes from, strongest first: command-line flags (`serve --bind`),",
        f"`{ENV_PREFIX}<SECTION>__<KEY>` environment variables, `OPENAI_API_KEY` /",
        "`OPENAI_BASE_URL`, the file given with `--config` (else `./config.toml` when there",
        "is one), the built-in defaults. A misspelt key, section or variable, or a value",
        "out of range, stops the start with a message naming it.",
        "",
        "Sections: " + ", ".join(f"[`[{s.name}]`](#{s.name})" for s in sections) + ".",
    ]
    for section in sections:
        prefix = f"{ENV_PREFIX}{section.name.upper()}__"
        out += ["", f"## `[{section.name}]`", ""]
        if section.comment:
            out += [" ".join(section.comment), ""]
        out += [
            f"Environment variables: `{prefix}<KEY>`, e.g. `{prefix}{section.keys[0].name.upper()}`.",
            "",
            "| key | default | accepts | description |",
            "|---|---|---|---|",
        ]
        for key in section.keys:
            out.append(
                f"| `{section.name}.{key.name}` | `{_code(toml_value(key.default))}` "
                f"| {_cell(accepted(section.name, key.name))} | {_cell(' '.join(key.comment))} |"
            )
    out += [
        "",
        "## Other environment variables",
        "",
        "| variable | meaning |",
        "|---|---|",
        *(f"| `{name}` | {_cell(meaning)} |" for name, meaning in OTHER_VARIABLES.items()),
        "",
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args()
    page = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != page:
            print(f"{OUTPUT.relative_to(REPO)} is out of date: run python scripts/config_reference.py")
            return 1
        print(f"{OUTPUT.relative_to(REPO)} is up to date")
        return 0
    OUTPUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
