"""Documents for narration: chapters and text of Markdown, HTML, EPUB and plain text, and
every input refused with a clear error (chattts.narrate.documents, .markup, .epub)."""

from __future__ import annotations

import io
import zipfile

import pytest

from chattts.errors import DocumentError, UsageError
from chattts.narrate import documents, epub
from chattts.narrate.documents import Chapter, load_document

MARKDOWN = """# The Book

## Chapter One

It was a *bright* cold day, and the [clocks](http://example.com/clocks) were
striking **thirteen**. Use `print()` here.

```python
x = 1
```

## Chapter Two

<script>alert("never read")</script>
<style>p { color: red }</style>
- first item
- second ~~item~~ ![a picture](pic.png)

## Chapter Three

The end.
"""

HTML = """<!DOCTYPE html><html><head><title>A Page</title>
<style>h1 { color: red }</style><script>var secret = "<p>no</p>";</script></head>
<body><h1>Part &amp; One</h1><p>First<br>line.</p>
<script type="module">document.write("never")</script>
<h1>Part Two</h1><div>Second <span>part</span>.<noscript>enable js</noscript></div>
<h1>Part Three</h1><p>Third.</p></body></html>"""


def read(data: bytes | str, kind: str, **kw) -> documents.Document:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return load_document("-", kind=kind, stdin=io.BytesIO(raw), **kw)


def spoken(doc: documents.Document) -> str:
    return "\n".join(p for c in doc.chapters for p in c.paragraphs)


def test_markdown_chapters_at_level_two_and_no_syntax_spoken():
    doc = read(MARKDOWN, "md")
    assert doc.title == "The Book"
    assert [c.title for c in doc.chapters] == ["Chapter One", "Chapter Two", "Chapter Three"]
    one = doc.chapters[0].paragraphs
    # the book's title (headings only before the first chapter) opens chapter one
    assert one[:2] == ("The Book", "Chapter One")
    assert one[2] == (
        "It was a bright cold day, and the clocks were striking thirteen. Use print() here."
    )
    assert one[3] == "x = 1"  # a code block's content, without its fences
    assert doc.chapters[1].paragraphs == ("Chapter Two", "first item", "second item")
    text = spoken(doc)
    for syntax in ("*", "**", "[", "](", "http", "`", "```", "#", "~~", "alert", "color", "pic"):
        assert syntax not in text


def test_markdown_with_several_h1_and_front_matter():
    doc = read("Preface text.\n\n# One\n\nA.\n\n# Two\n\nB.\n", "md")
    assert [c.title for c in doc.chapters] == ["stdin", "One", "Two"]
    assert doc.chapters[0].paragraphs == ("Preface text.",)


def test_html_text_only_scripts_and_styles_never_read():
    doc = read(HTML, "html")
    assert doc.title == "A Page"
    assert [c.title for c in doc.chapters] == ["Part & One", "Part Two", "Part Three"]
    assert doc.chapters[0].paragraphs == ("Part & One", "First line.")
    assert doc.chapters[1].paragraphs == ("Part Two", "Second part.")
    text = spoken(doc)
    for never in ("secret", "never", "color", "enable js", "<", ">"):
        assert never not in text


def test_plain_text_one_chapter_or_chapters_by_pattern():
    text = "CHAPTER I\nIt was a dark\nnight.\n\nSecond para.\nCHAPTER II\n中文的\n句子。\n"
    doc = read(text, "txt")
    assert len(doc.chapters) == 1 and doc.chapters[0].title == "stdin"
    doc = read(text, "txt", chapter_pattern=r"^CHAPTER [IVX]+$")
    assert doc.chapters == (
        Chapter("CHAPTER I", ("CHAPTER I", "It was a dark night.", "Second para.")),
        Chapter("CHAPTER II", ("CHAPTER II", "中文的句子。")),  # CJK lines join without a space
    )
    # the pattern also splits structured documents, at the blocks it matches
    doc = read(MARKDOWN, "md", chapter_pattern="^Chapter (One|Three)$")
    assert [c.title for c in doc.chapters] == ["Chapter One", "Chapter Three"]
    assert doc.chapters[0].paragraphs[:2] == ("The Book", "Chapter One")
    assert "Chapter Two" in doc.chapters[0].paragraphs


def test_files_by_suffix_and_utf16(tmp_path):
    (tmp_path / "b.markdown").write_text(MARKDOWN, encoding="utf-8")
    assert len(load_document(str(tmp_path / "b.markdown")).chapters) == 3
    (tmp_path / "p.htm").write_text(HTML, encoding="utf-8")
    assert load_document(str(tmp_path / "p.htm")).title == "A Page"
    (tmp_path / "u.txt").write_bytes("Hello there.".encode("utf-16"))
    assert load_document(str(tmp_path / "u.txt")).chapters[0].paragraphs == ("Hello there.",)
    (tmp_path / "noext").write_text("Plain words.", encoding="utf-8")
    assert load_document(str(tmp_path / "noext")).title == "noext"


# ---- EPUB ---------------------------------------------------------------------------------------


def make_epub(path, *, toc: bool = True, fragments: bool = False) -> None:
    """A three-chapter EPUB written with ebooklib (a nav, an NCX, a non-linear note)."""
    from ebooklib import epub as eb

    book = eb.EpubBook()
    book.set_identifier("id-1")
    book.set_title("An EPUB Book")
    book.set_language("en")
    chapters = []
    for n in (1, 2):
        c = eb.EpubHtml(title=f"Chapter {n}", file_name=f"c{n}.xhtml", lang="en")
        body = f"<h1>Chapter {n}</h1><p>Text of chapter {n}.</p>"
        if n == 2 and fragments:
            body += '<h2 id="third">Chapter 3</h2><p>Text of chapter 3.</p>'
        c.content = f"<html><body>{body}<script>alert(1)</script></body></html>"
        chapters.append(c)
    if not fragments:
        c = eb.EpubHtml(title="Chapter 3", file_name="c3.xhtml", lang="en")
        c.content = "<html><body><h1>Chapter 3</h1><p>Text of chapter 3.</p></body></html>"
        chapters.append(c)
    note = eb.EpubHtml(title="Note", file_name="note.xhtml", lang="en")
    note.content = "<html><body><p>A note, not in the reading order.</p></body></html>"
    for c in [*chapters, note]:
        book.add_item(c)
    if toc:
        links = [eb.Link(c.file_name, c.title, f"u{i}") for i, c in enumerate(chapters[:2])]
        third = "c2.xhtml#third" if fragments else "c3.xhtml"
        links.append(eb.Link(third, "Chapter 3", "u3"))
        book.toc = links
        book.add_item(eb.EpubNav())
    book.add_item(eb.EpubNcx())  # (without entries when toc is False)
    book.spine = [*chapters, (note, "no")] if not toc else ["nav", *chapters, (note, "no")]
    eb.write_epub(str(path), book)


@pytest.mark.parametrize("fragments", [False, True])
def test_epub_chapters_from_the_table_of_contents(tmp_path, fragments):
    path = tmp_path / "book.epub"
    make_epub(path, fragments=fragments)
    doc = load_document(str(path))
    assert doc.title == "An EPUB Book"
    assert [c.title for c in doc.chapters] == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert doc.chapters[2].paragraphs == ("Chapter 3", "Text of chapter 3.")
    text = spoken(doc)
    assert "alert" not in text and "note" not in text  # scripts and non-linear items
    # stdin (--input-format epub) reads the same
    assert read(path.read_bytes(), "epub") == doc


def test_epub_without_toc_has_a_chapter_per_spine_document(tmp_path):
    path = tmp_path / "book.epub"
    make_epub(path, toc=False)
    doc = load_document(str(path))
    assert [c.title for c in doc.chapters] == ["Chapter 1", "Chapter 2", "Chapter 3"]


# ---- refused inputs -----------------------------------------------------------------------------


def test_empty_documents(tmp_path):
    for data, kind in (("", "txt"), ("\n \n", "txt"), ("<script>x()</script>", "html")):
        with pytest.raises(DocumentError, match="nothing to narrate"):
            read(data, kind)
    with pytest.raises(DocumentError, match="nothing to narrate"):
        read("# \n\n```\n```\n", "md")


def test_text_that_is_not_utf8_names_the_byte_offset():
    with pytest.raises(DocumentError, match=r"not UTF-8 text \(byte 0xe9 at byte offset 8\)"):
        read(b"Caf\xc3\xa9 ! \xe9t\xe9", "txt")


def test_too_large_texts_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "MAX_TEXT_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 400)
    reads = []
    spy = lambda *a, **k: reads.append(a) or open(*a, **k)  # noqa: E731
    monkeypatch.setattr(documents, "open", spy, raising=False)  # found before the builtin
    with pytest.raises(DocumentError, match=r"big.txt: too large \(0.0 MiB\)"):
        load_document(str(big))
    assert reads == []  # refused from its size alone
    with pytest.raises(DocumentError, match="stdin: too large"):
        read(b"word " * 400, "txt")


def test_unknown_type_and_bad_pattern(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    with pytest.raises(DocumentError, match=r"unknown document type '.pdf'"):
        load_document(str(tmp_path / "a.pdf"))
    with pytest.raises(UsageError, match="not a regular expression"):
        read("x", "txt", chapter_pattern="(")


def test_epub_that_is_not_a_zip_or_not_an_epub(tmp_path):
    bad = tmp_path / "bad.epub"
    bad.write_bytes(b"this is no zip")
    with pytest.raises(DocumentError, match="not an EPUB \\(not a zip file"):
        load_document(str(bad))
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "not an EPUB")
    with pytest.raises(DocumentError, match="not a readable EPUB"):
        load_document(str(bad))


def test_zip_bomb_ratio_is_refused_before_reading(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.epub"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("OEBPS/c1.xhtml", b"\0" * (8 * 1024 * 1024))  # 8 MiB of zeros: ~1000x
    called = []
    monkeypatch.setattr(epub, "_read_book", lambda *a: called.append(a))
    with pytest.raises(DocumentError, match=r"c1.xhtml expands \d+ times \(at most 100\)"):
        load_document(str(bomb))
    assert called == []  # ebooklib never saw it


@pytest.mark.parametrize(
    "limit, value, needle",
    [
        ("MAX_MEMBER_BYTES", 1000, r"c1.xhtml expands to 5000 bytes \(at most 1000\)"),
        ("MAX_TOTAL_BYTES", 6000, r"its files expand to \d+ bytes \(at most 6000\)"),
        ("MAX_MEMBERS", 2, r"3 files in the EPUB \(at most 2\)"),
        ("MAX_EPUB_BYTES", 100, r"too large \(0 MiB\): at most 0 MiB"),
    ],
)
def test_epub_size_bounds(tmp_path, monkeypatch, limit, value, needle):
    path = tmp_path / "b.epub"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("OEBPS/c1.xhtml", b"a" * 5000)
        z.writestr("OEBPS/c2.xhtml", b"b" * 3000)
    monkeypatch.setattr(epub, limit, value)
    with pytest.raises(DocumentError, match=needle):
        load_document(str(path))
