"""The reading page's message catalogues (insightreader/web/js/i18n/): every message
the page's code asks for is translated, and no visible English is left outside them.
The page itself in Chinese is driven in Chromium by tests/test_page_i18n.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from insightreader.analyses import LENSES

WEB = Path(__file__).resolve().parents[1] / "insightreader" / "web"
JS = WEB / "js"
SOURCES = sorted(p for p in JS.rglob("*.js") if p.parent.name != "i18n")
#: Modules whose constants hold messages that are translated where they are shown
#: (``t(STATUS_LABELS[status])``): every string value in them is a message.
MESSAGE_TABLES = {
    "messages.js": ("REQUEST_ERRORS", "TASK_ERRORS", "FIELDS", "TASK_LABELS", "STATUS_LABELS", "VALIDATION", "PATTERN_HINTS"),
    "app.js": ("CONNECTION_TEXT", "CONNECTION_TITLE"),
    "views/webhooks.js": ("DELIVERY_STATUS",),
    "views/settings.js": ("SCOPES",),
}
_LITERAL = r"'((?:\\.|[^'\\])*)'"
_CALL = re.compile(r"\bt\(\s*" + _LITERAL)
_STATIC = re.compile(r'data-i18n(?:-[a-z-]+)?="([^"]*)"')
#: Literals in these positions are what a reader sees.
_VISIBLE = re.compile(
    r"(?:\b(?:setText|toast|announce)\([^,()]*,?\s*|"
    r"(?:placeholder|title|text|'aria-label'):\s*|"
    r"\bh\('[a-z0-9]+', (?:null|\{[^{}]*\}|[a-zA-Z]+),\s*(?:[^'()]*,\s*)?|"
    r"document\.title = |textContent = |\?\s*|:\s*)$"
)


def catalogue(name: str) -> dict[str, object]:
    """A catalogue module's object (they are written as JSON after ``export default``)."""
    text = (JS / "i18n" / name).read_text()
    body = text[text.index("export default") + len("export default") : text.rindex(";")]
    return json.loads(re.sub(r",(\s*})", r"\1", body))


def unescape(literal: str) -> str:
    return literal.replace("\\'", "'").replace("\\\\", "\\").replace("\\n", "\n")


def tables(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where the constants ``names`` (objects or arrays) of ``path`` are: character spans."""
    text = path.read_text()
    spans = []
    for name in names:
        start = text.index(f"const {name} = ") + len(f"const {name} = ")
        depth, end = 0, start
        for end, char in enumerate(text[start:], start):
            depth += 1 if char in "{[" else -1 if char in "}]" else 0
            if depth == 0:
                break
        spans.append((start, end + 1))
    return spans


def table_messages(path: Path, names: tuple[str, ...]) -> set[str]:
    """The string values of the constants ``names`` of ``path``."""
    text = path.read_text()
    found: set[str] = set()
    for start, end in tables(path, names):
        found |= {unescape(m[0] or m[1]) for m in re.findall(r":\s*" + _LITERAL + r"|,\s*" + _LITERAL, text[start:end])}
    return found


def asked_for() -> dict[str, str]:
    """Every message the page's code asks for, with where."""
    messages: dict[str, str] = {}
    for path in SOURCES:
        text = path.read_text()
        where = str(path.relative_to(WEB))
        for match in _CALL.finditer(text):
            messages.setdefault(unescape(match[1]), where)
    for name, tables in MESSAGE_TABLES.items():
        for message in table_messages(JS / name, tables):
            messages.setdefault(message, name)
    for match in _STATIC.finditer((WEB / "index.html").read_text()):
        messages.setdefault(match[1], "index.html")
    for lens in LENSES.values():  # the server's names, translated on the page
        messages.setdefault(lens.name, "GET /thinking-lenses")
        messages.setdefault(lens.description, "GET /thinking-lenses")
    return messages


def test_every_message_the_page_asks_for_is_in_the_chinese_catalogue() -> None:
    chinese = catalogue("zh-CN.js")
    asked = asked_for()
    assert len(asked) > 250  # the scan found the page's messages
    missing = {message: where for message, where in asked.items() if message not in chinese}
    assert not missing, "not in i18n/zh-CN.js:\n" + "\n".join(f"  {w}: {m!r}" for m, w in sorted(missing.items(), key=lambda x: x[1]))
    unused = set(chinese) - set(asked)
    assert not unused, f"in i18n/zh-CN.js but asked for nowhere: {sorted(unused)}"


def test_the_catalogues_keep_the_placeholders_and_the_plural_forms() -> None:
    chinese, english = catalogue("zh-CN.js"), catalogue("en.js")
    for message, translated in chinese.items():
        assert isinstance(translated, str) and translated.strip(), message
        assert sorted(re.findall(r"\{\w+\}", message)) == sorted(re.findall(r"\{\w+\}", translated)), (message, translated)
        assert not re.search(r"[A-Za-z]{4,}", re.sub(r"\{\w+\}|InsightReader|Markdown|Obsidian|JSON|Webhooks?|Standard|Authorization|Bearer|"
                                                   r"INSIGHTREADER_TOKEN|insightreader|Pocket|Instapaper|Readwise|Reader|Omnivore|wallabag|"
                                                   r"Karakeep|Linkwarden|docs/import-export\.md|Enter|Ctrl|https?|POST|HTML|zip|CSV|GET", "", translated)), (message, translated)
    asked = asked_for()
    for message, forms in english.items():
        assert message in asked, message
        assert isinstance(forms, dict) and set(forms) == {"one", "other"}, message
        assert forms["other"] == message


def test_no_visible_english_literal_is_left_outside_the_catalogue() -> None:
    """A quoted English string where the page shows text (``setText(el, 'Delete')``,
    ``h('button', {...}, 'Save')``, a placeholder, a title, a toast) must be a ``t()``
    message."""
    found = []
    for path in SOURCES:
        if path.name == "i18n.js":  # the languages' names, each in itself
            continue
        text = path.read_text()
        spans = tables(path, MESSAGE_TABLES.get(str(path.relative_to(JS)), ()))
        in_tables = {text.count("\n", 0, offset) + 1 for start, end in spans for offset in range(start, end)}
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith(("import ", "//", "*", "/*")) or number in in_tables:
                continue
            for match in re.finditer(_LITERAL, line):
                value, before = match[1], line[: match.start()]
                if re.search(r"\bt\(\s*$", before) or not re.search(r"[A-Za-z]{2}", value):
                    continue
                if not _VISIBLE.search(before) or re.fullmatch(r"[\w\-./#:?=&, ]*", value) and not re.search(r"[A-Z]| ", value.strip()):
                    continue
                if re.fullmatch(r"[a-z0-9_\- ]+", value) or value.startswith(("http", "/", "#", ".", "[")):
                    continue
                found.append(f"{path.relative_to(WEB)}:{number}: {value!r}")
    assert not found, "visible text outside t():\n" + "\n".join(found)
