"""The import parsers read each format's real export shape (fixtures written from the
formats' documentation and the exporting projects' sources: tests/data/imports/README.md)
into ImportItems, and refuse unreadable or oversized files whole with BadImport."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from insightreader import export, importers
from insightreader.errors import BadImport, BadRequest, ValidationFailed
from insightreader.importers import ImportedHighlight, ImportItem, Limits, fields
from insightreader.importers.omnivore import parse_highlights
from insightreader.records import Article, Highlight

DATA = Path(__file__).parent / "data" / "imports"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _omnivore_zip() -> bytes:
    root = DATA / "omnivore"
    return _zip({path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()})


# --- one round of each format ------------------------------------------------------------------


def test_browser_bookmarks() -> None:
    result = importers.parse("netscape", (DATA / "bookmarks.html").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/essays/slow-reading",
            title='Slow reading & the "long" essay',
            content=None,
            tags=("Reading", "essays"),  # the toolbar container is no tag; "reading" is a duplicate
            saved_at="2023-11-14T22:13:20.000Z",
        ),
        ImportItem(
            url="https://example.org/paper?id=1&v=2",
            title="A paper",
            content=None,
            tags=("Research",),  # its folder
            saved_at="2023-11-14T22:18:20.000Z",
        ),
        ImportItem(url="http://example.net/", title="Milliseconds", content=None, saved_at="2023-11-14T22:23:20.000Z"),
    )
    assert result.skipped == 2  # javascript: and place: are no URLs


def test_pocket_html_export() -> None:
    result = importers.parse("netscape", (DATA / "pocket.html").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/unread-one",
            title="Unread one",
            content=None,
            tags=("tech",),
            saved_at="2020-09-13T12:26:40.000Z",
        ),
        ImportItem(
            url="https://example.com/read-one",
            title="Read one",
            content=None,
            archived=True,
            saved_at="2017-07-14T02:40:00.000Z",
        ),
    )
    assert result.skipped == 0


def test_pocket_csv() -> None:
    result = importers.parse("pocket_csv", (DATA / "pocket.csv").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/plain",
            title='Why "plain text" matters',
            content=None,
            tags=("writing", "Tools"),
            saved_at="2023-11-14T22:13:20.000Z",
        ),
        ImportItem(
            url="https://example.com/two-lines",
            title="A title over two lines",
            content=None,
            archived=True,
            saved_at="2020-09-13T12:26:40.000Z",
        ),
    )
    assert result.skipped == 1  # the row without a URL


def test_instapaper_csv() -> None:
    result = importers.parse("instapaper_csv", (DATA / "instapaper.csv").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/starred",
            title="Starred piece",
            content=None,
            tags=("coding", "rust"),
            favorite=True,
            saved_at="2023-03-18T21:19:45.000Z",
        ),
        ImportItem(
            url="https://example.com/archived",
            title="Archived piece",
            content=None,
            archived=True,
            saved_at="2023-09-13T14:05:37.000Z",
        ),
        ImportItem(
            url="https://example.com/mine",
            title="In my folder",
            content=None,
            tags=("essays", "Long reads"),
            saved_at="2023-03-18T21:21:23.000Z",
        ),
        ImportItem(url="https://example.com/unread", title="Unread piece", content=None, saved_at="2023-03-18T21:21:40.000Z"),
    )


def test_instapaper_csv_without_a_tags_column() -> None:
    data = b"URL,Title,Selection,Folder,Timestamp\nhttps://example.com/i,An essay,,Unread,1600000000\n"
    assert importers.parse("instapaper_csv", data).items == (
        ImportItem(url="https://example.com/i", title="An essay", content=None, saved_at="2020-09-13T12:26:40.000Z"),
    )


def test_readwise_reader_csv() -> None:
    result = importers.parse("readwise_csv", (DATA / "readwise.csv").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/r1",
            title="The archived one",
            content=None,
            tags=("ai", "Reading"),
            archived=True,
            saved_at="2023-07-12T15:19:36.000Z",
        ),
        ImportItem(
            url="https://example.com/r2",
            title="Shortlisted",
            content=None,
            favorite=True,
            saved_at="2023-07-13T06:00:00.000Z",
        ),
        ImportItem(
            url="https://example.com/r3",
            title="Later",
            content=None,
            tags=("json", "tags"),
            saved_at="2023-07-14T09:30:00.000Z",
        ),
    )


def test_wallabag_json() -> None:
    result = importers.parse("wallabag", (DATA / "wallabag.json").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/gravity",
            title="On gravity",
            content="On gravity\n\nThings fall \u2014 always.\n\nApples included.",
            tags=("Science", "physics"),
            archived=True,
            saved_at="2020-01-01T09:00:00.000Z",
            author="Isaac Newton, Edmond Halley",
            highlights=(ImportedHighlight(quote="Things fall \u2014 always.", note="Key claim"),),
        ),
        ImportItem(
            url="https://example.com/starred",
            title="Untitled link",
            content=None,
            favorite=True,
            saved_at="2021-06-01T00:00:00.000Z",
        ),
    )


def test_omnivore_zip() -> None:
    result = importers.parse("omnivore", _omnivore_zip())
    assert result.items == (
        ImportItem(
            url="https://example.com/notes",
            title="The art of note-taking",
            content="Why notes\n\nWrite it down & keep it.\n\nFirst\n\nSecond",
            tags=("Newsletter", "notes"),
            archived=True,
            saved_at="2024-01-15T10:30:00.000Z",
            author="Jane Doe",
            highlights=(
                ImportedHighlight(quote="Write it down & keep it.", note="My favourite line.\n\nIt still is."),
                ImportedHighlight(quote="First\nand second paragraph"),
            ),
        ),
        ImportItem(
            url="https://example.com/unread",
            title="Unread, no content file",
            content=None,
            saved_at="2024-02-01T08:00:00.000Z",
        ),
    )
    assert result.skipped == 0


def test_omnivore_highlight_blocks() -> None:
    markdown = "A page note before any quote\n\n> one\nline two \n\n#tag\n\n#not only labels\n\n> next \n"
    assert parse_highlights(markdown) == (
        ImportedHighlight(quote="one\nline two", note="#not only labels"),
        ImportedHighlight(quote="next"),
    )


def test_own_export() -> None:
    result = importers.parse("insightreader", (DATA / "insightreader.json").read_bytes())
    assert result.items == (
        ImportItem(
            url="https://example.com/attention",
            title="Attention, please",
            content="Attention is a resource.\n\nSpend it well.",
            tags=("focus", "habits"),
            favorite=True,
            saved_at="2026-11-30T12:00:00.250Z",
            author="A. Writer",
            highlights=(ImportedHighlight(quote="Attention is a resource.", note="true", suffix="\n\nSpend"),),
        ),
        ImportItem(
            url=None,
            title="Pasted text",
            content="Only text, no link.",
            archived=True,
            saved_at="2026-11-29T08:00:00.000Z",
        ),
    )


def test_own_export_reads_back_what_the_exporter_writes() -> None:
    article = Article(
        id="a1",
        seq=1,
        user_id="u1",
        title="Street trees",
        content="Trees cool streets.",
        url="https://example.com/trees",
        content_hash="h",
        analysis={"summary": "About trees."},
        meta_analysis=None,
        lenses={},
        created_at="2026-12-01T10:00:00.000Z",
        updated_at="2026-12-02T10:00:00.000Z",
    )
    highlight = Highlight(
        id="h1",
        user_id="u1",
        article_id="a1",
        quote="cool",
        prefix="Trees ",
        suffix=" streets.",
        position=6,
        note="Shade helps.",
        created_at="2026-12-01T11:00:00.000Z",
        updated_at="2026-12-01T11:00:00.000Z",
    )
    document = {
        "format": "insightreader",
        "version": export.FORMAT_VERSION,
        "exported_at": "2026-12-05T07:00:00.000Z",
        "username": "reader",
        "articles": [export.article_document(article, [{"question": "Why?", "answer": "Shade."}], [highlight])],
    }
    assert importers.parse("insightreader", json.dumps(document).encode()).items == (
        ImportItem(
            url="https://example.com/trees",
            title="Street trees",
            content="Trees cool streets.",
            saved_at="2026-12-01T10:00:00.000Z",
            highlights=(ImportedHighlight(quote="cool", note="Shade helps.", prefix="Trees ", suffix=" streets."),),
        ),
    )


# --- unreadable files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("netscape", b"just some text", "not a bookmark HTML file"),
        ("netscape", b'<DL><DT><A HREF="https://e.com" ADD_DATE="soon">x</A></DL>', "link 1: cannot read the time 'soon'"),
        ("pocket_csv", b"title,url,time_added,tags,status\nx,https://e.com,1,,deleted\n", "line 2: unknown status 'deleted'"),
        ("pocket_csv", b'title,url\n"unterminated,https://e.com\n', "malformed CSV"),
        ("pocket_csv", b"", "the CSV file is empty"),
        ("instapaper_csv", b"URL,Title,Selection,Folder,Timestamp,Tags\nhttps://e.com,x,,Unread,1,[oops\n", "line 2: Tags"),
        ("instapaper_csv", b"URL,Title,Selection,Folder,Timestamp\nhttps://e.com,x,,Unread,yesterday\n", "line 2: cannot read the time"),
        ("readwise_csv", b"Title,URL,Location\nx,https://e.com,trash\n", "line 2: unknown Location 'trash'"),
        ("readwise_csv", b"Title,URL,Document tags\nx,https://e.com,\"['a', \"\n", "line 2: Document tags"),
        ("wallabag", b'{"entries": []}', "JSON array of entries"),
        ("wallabag", b'[{"url": "https://e.com", "tags": "a,b"}]', "entry 1: tags is not an array"),
        ("wallabag", b'[{"url": "https://e.com"}, {"url": 5}]', "entry 2: the URL is not a string"),
        ("wallabag", b'[{"url": "https://e.com", "is_archived": "maybe"}]', "entry 1: is_archived is not true or false"),
        ("wallabag", b'[{"url": "https://e.com",', "not JSON"),
        ("insightreader", b'{"format": "pocket", "version": 1, "articles": []}', 'its "format" is not "insightreader"'),
        ("insightreader", b'{"format": "insightreader", "version": 2, "articles": []}', "unsupported export version"),
        (
            "insightreader",
            b'{"format": "insightreader", "version": 1, "articles": [{"url": "https://e.com", "highlights": [{"note": "n"}]}]}',
            "article 1, highlight 1: quote is missing",
        ),
        ("omnivore", b"PK\x03\x04 not really", "not a zip archive"),
        ("omnivore", _zip({"content/a.html": b"<p>x</p>"}), "no metadata_*.json"),
        ("omnivore", _zip({"metadata_0_to_1.json": b'{"title": "x"}'}), "metadata_0_to_1.json is not a JSON array"),
        ("omnivore", _zip({"metadata_0_to_1.json": b'[{"url": "https://e.com", "savedAt": "never"}]'}), "item 1: cannot read"),
    ],
)
def test_unreadable_files_are_refused_saying_where(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(BadImport) as raised:
        importers.parse(fmt, data)
    assert message in raised.value.message


def test_bad_import_is_a_400_bad_request() -> None:
    assert issubclass(BadImport, BadRequest)
    assert (BadImport.status, BadImport.code) == (400, "bad_import")


def test_an_unknown_format_is_a_validation_error_listing_the_formats() -> None:
    with pytest.raises(ValidationFailed) as raised:
        importers.parse("evernote", b"")
    assert "netscape" in raised.value.message and "insightreader" in raised.value.message


@pytest.mark.parametrize("fmt", ["pocket_csv", "instapaper_csv", "readwise_csv"])
def test_a_csv_without_its_url_column_is_refused(fmt: str) -> None:
    with pytest.raises(BadImport, match="(?i)no url column"):
        importers.parse(fmt, b"Title,Link\nx,https://example.com\n")


@pytest.mark.parametrize("fmt", list(importers.FORMATS))
def test_text_that_is_not_utf8_is_refused(fmt: str) -> None:
    data = b"title,url\n\xff\xfe,https://e.com\n" if fmt != "omnivore" else _zip({"metadata_0.json": b"[\xff]"})
    with pytest.raises(BadImport, match="not UTF-8"):
        importers.parse(fmt, data)


def test_a_zip_member_that_is_not_utf8_is_named() -> None:
    archive = _zip({"metadata_0.json": b'[{"slug": "s", "url": "https://e.com"}]', "content/s.html": b"<p>\xff</p>"})
    with pytest.raises(BadImport, match="content/s.html is not UTF-8 text"):
        importers.parse("omnivore", archive)


# --- limits ------------------------------------------------------------------------------------


def test_more_items_than_the_limit_refuses_the_whole_file() -> None:
    rows = b"".join(b"t,https://example.com/%d,1700000000,,unread\n" % number for number in range(100_001))
    with pytest.raises(BadImport, match="more than 100000 items"):
        importers.parse("pocket_csv", b"title,url,time_added,tags,status\n" + rows)


@pytest.mark.parametrize("fmt", ["netscape", "wallabag", "insightreader"])
def test_the_item_limit_counts_skipped_items_too(fmt: str) -> None:
    links = {
        "netscape": b"<DL>" + b'<DT><A HREF="javascript:x">x</A>' * 4 + b"</DL>",
        "wallabag": json.dumps([{"title": "no url"}] * 4).encode(),
        "insightreader": json.dumps({"format": "insightreader", "version": 1, "articles": [{}] * 4}).encode(),
    }
    assert importers.parse(fmt, links[fmt], Limits(max_items=4)).skipped == 4
    with pytest.raises(BadImport, match="more than 3 items"):
        importers.parse(fmt, links[fmt], Limits(max_items=3))


def test_a_zip_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = _zip({"metadata_0.json": b"[]", "content/a.html": bytes(9 * 1024 * 1024)})
    assert len(bomb) < 20_000
    with pytest.raises(BadImport, match="unpacks to more than 8388608 bytes"):
        importers.parse("omnivore", bomb, Limits(max_unzipped_bytes=8 * 1024 * 1024))


def test_a_zip_with_too_many_members_is_refused() -> None:
    archive = _zip({f"highlights/{number}.md": b"" for number in range(11)} | {"metadata_0.json": b"[]"})
    with pytest.raises(BadImport, match="more than 10 files"):
        importers.parse("omnivore", archive, Limits(max_zip_members=10))


@pytest.mark.parametrize("depth", [65, 200_000])
def test_json_nested_too_deep_is_refused(depth: int) -> None:
    data = b"[" * depth + b"]" * depth
    with pytest.raises(BadImport, match="deeper than 64 levels"):
        importers.parse("wallabag", data)


def test_bookmark_folders_nested_too_deep_are_refused() -> None:
    data = b"<DL>" * 65 + b'<DT><A HREF="https://example.com">x</A>'
    with pytest.raises(BadImport, match="folders nested deeper than 64 levels"):
        importers.parse("netscape", data)
    assert len(importers.parse("netscape", b"<DL>" * 64 + b'<DT><A HREF="https://example.com">x</A>').items) == 1


def test_json_at_the_depth_limit_is_read() -> None:
    nested: object = "deep"
    for _ in range(61):
        nested = [nested]
    document = [{"url": "https://example.com/deep", "extra": nested}]
    assert [item.url for item in importers.parse("wallabag", json.dumps(document).encode()).items] == ["https://example.com/deep"]


# --- field values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, "2023-11-14T22:13:20.000Z"),
        ("1700000000", "2023-11-14T22:13:20.000Z"),
        (1700000000.5, "2023-11-14T22:13:20.500Z"),
        (1700000000123, "2023-11-14T22:13:20.123Z"),
        ("2020-01-01T10:00:00+0100", "2020-01-01T09:00:00.000Z"),
        ("2023-07-12 15:19:36+00:00", "2023-07-12T15:19:36.000Z"),
        ("2024-01-15T10:30:00.000Z", "2024-01-15T10:30:00.000Z"),
        ("2024-01-15T10:30:00", "2024-01-15T10:30:00.000Z"),
        # Go's zero time, which Go-written exports use for "never": the year keeps its
        # four digits, so the time sorts first and reads back as ISO 8601.
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("0999-12-31T23:59:59.9999+00:00", "0999-12-31T23:59:59.999Z"),
        ("", None),
        (None, None),
    ],
)
def test_times(value: object, expected: str | None) -> None:
    assert fields.timestamp(value, "here") == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "9" * 30, True, [1], "-5"])
def test_unreadable_times(value: object) -> None:
    with pytest.raises(BadImport, match="here"):
        fields.timestamp(value, "here")


def test_tags_are_trimmed_and_unique_ignoring_case() -> None:
    assert fields.tags([" Rust ", "", "rust", "RUST", "  ", "Go", "straße", "STRASSE"], "here") == ("Rust", "Go", "straße")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" https://example.com/a ", "https://example.com/a"),
        ("HTTP://example.com", "HTTP://example.com"),
        ("javascript:alert(1)", None),
        ("ftp://example.com/file", None),
        ("https://", None),
        ("http://[::1", None),
        ("https://example.com/" + "a" * 9000, None),
    ],
)
def test_urls(value: str, expected: str | None) -> None:
    assert fields.url(value, "here") == expected


# --- hostile input -----------------------------------------------------------------------------


def _fixtures() -> list[tuple[str, bytes]]:
    return [
        ("netscape", (DATA / "bookmarks.html").read_bytes()),
        ("netscape", (DATA / "pocket.html").read_bytes()),
        ("pocket_csv", (DATA / "pocket.csv").read_bytes()),
        ("instapaper_csv", (DATA / "instapaper.csv").read_bytes()),
        ("readwise_csv", (DATA / "readwise.csv").read_bytes()),
        ("wallabag", (DATA / "wallabag.json").read_bytes()),
        ("insightreader", (DATA / "insightreader.json").read_bytes()),
        ("omnivore", _omnivore_zip()),
    ]


@pytest.mark.parametrize(("fmt", "data"), _fixtures())
def test_a_cut_or_damaged_file_is_read_or_refused_never_a_crash(fmt: str, data: bytes) -> None:
    """Every prefix of each fixture, and each with one byte changed, either parses or is a
    BadImport; no other exception escapes."""
    variants = [data[:end] for end in range(0, len(data), max(1, len(data) // 60))]
    variants += [data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :] for at in range(0, len(data), max(1, len(data) // 60))]
    refused = 0
    for variant in variants:
        try:
            importers.parse(fmt, variant)
        except BadImport:
            refused += 1
    assert refused > 0


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("wallabag", b'[{"url": "https://e.com", "created_at": ' + b"1" * 5000 + b"}]"),
        ("wallabag", b'[{"url": "https://e.com", "created_at": NaN}]'),
        ("wallabag", b'[{"url": "https://e.com", "created_at": 1e300}]'),
        ("instapaper_csv", b"URL,Tags\nhttps://e.com," + b"1" * 5000 + b"\n"),
        ("readwise_csv", b'URL,Document tags\nhttps://e.com,"' + b"[" * 5000 + b'"\n'),
        ("readwise_csv", b'URL,Document tags\nhttps://e.com,"[' + b"1" * 5000 + b']"\n'),
        ("pocket_csv", b'url,title\nhttps://e.com,"' + b"x" * 200_000 + b'"\n'),
        ("omnivore", _zip({"metadata_0.json": b"[]"}).replace(b"PK\x01\x02\x14\x03\x14", b"PK\x01\x02\x14\x03\x7d")),
    ],
)
def test_hostile_values_are_refused(fmt: str, data: bytes) -> None:
    with pytest.raises(BadImport):
        importers.parse(fmt, data)


@pytest.mark.parametrize("markup", ["<!--", "<a ", "<![", "</", "<a x='>", "<?"])
@pytest.mark.parametrize("fmt", ["netscape", "wallabag"])
def test_unclosed_markup_is_read_in_linear_time(fmt: str, markup: str) -> None:
    """Python 3.11's html.parser takes minutes over 100 KB of these; libxml2 is linear."""
    html = '<DL><DT><A HREF="https://example.com/x">x</A>' + markup * (400_000 // len(markup))
    data = html.encode() if fmt == "netscape" else json.dumps([{"url": "https://example.com/x", "content": html}]).encode()
    started = time.monotonic()
    assert [item.url for item in importers.parse(fmt, data).items][:1] == ["https://example.com/x"]
    assert time.monotonic() - started < 5
