"""Reading lead files: CSV, JSON or JSON Lines bytes into raw records with their place.

Pure parsing (bytes in, records out), so it is tested without a database. Every record
carries `file:line` of where it starts, also after blank lines and quoted values that span
lines. A file that is not UTF-8 but reads as CP932 (Excel's Japanese encoding) gets a hint
to import it again with `--encoding cp932`.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nurture.errors import NurtureError


@dataclass(frozen=True)
class RowProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


Record = tuple[str, dict[str, Any] | RowProblem]

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uff66-\uff9f]")


def decode(data: bytes, name: str, encoding: str | None = None) -> str:
    """The text of a lead file: UTF-8 (with or without BOM) unless `encoding` says otherwise."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise NurtureError(f"{name}: unknown encoding {encoding!r}") from exc
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise NurtureError(f"{name}:{line}: not {encoding} ({exc.reason})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = "save it as UTF-8 (in Excel: 'CSV UTF-8') or pass --encoding with the file's encoding"
        try:
            guess = data.decode("cp932")
        except UnicodeDecodeError:
            guess = ""
        if _JAPANESE.search(guess):
            hint = "it looks like Japanese Excel's encoding (CP932/Shift_JIS): import it with --encoding cp932"
        raise NurtureError(f"{name}:{line}: not UTF-8 ({exc.reason}) — {hint}") from exc


def parse_rows(data: bytes, name: str, *, encoding: str | None = None) -> Iterator[Record]:
    """(where, raw record or problem) for each record of the file `name` (its suffix says the format)."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise NurtureError(f"{name}: unknown format; use .csv, .json or .jsonl")
    text = decode(data, name, encoding)
    if suffix == ".csv":
        yield from _csv_rows(text, name)
    elif suffix == ".json":
        yield from _json_array(text, name)
    else:
        yield from _json_lines(text, name)


class LeadFile:
    """A lead file read as a stream of records, so memory stays flat whatever its size.

    CSV and JSON Lines are read record by record, after one streaming pass that checks the
    whole file decodes (a file in the wrong encoding is refused before anything is written,
    naming the line, as before). A JSON array is read whole. `position` says how many bytes
    have been read, for a progress bar.
    """

    def __init__(self, path: Path, *, encoding: str | None = None) -> None:
        self.path = path
        self.name = str(path)
        self.encoding = encoding
        try:
            self.size = path.stat().st_size
        except FileNotFoundError as exc:
            raise NurtureError(f"{path}: no such file") from exc
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
            raise NurtureError(f"{self.name}: unknown format; use .csv, .json or .jsonl")
        self.suffix = suffix
        self._raw: io.BufferedReader | None = None

    @property
    def position(self) -> int:
        raw = self._raw
        if raw is None or raw.closed:
            return self.size if raw is not None else 0
        return raw.tell()

    def __iter__(self) -> Iterator[Record]:
        if self.suffix == ".json":
            yield from parse_rows(self.path.read_bytes(), self.name, encoding=self.encoding)
            return
        codec = _check_decodes(self.path, self.name, self.encoding)
        with self.path.open("rb") as raw:
            self._raw = raw
            text = io.TextIOWrapper(raw, encoding=codec, newline="" if self.suffix == ".csv" else None)
            if self.suffix == ".csv":
                yield from _csv_rows(text, self.name)
            else:
                yield from _json_lines(text, self.name)


def read_rows(path: Path, *, encoding: str | None = None) -> Iterator[Record]:
    return iter(LeadFile(path, encoding=encoding))


_BLOCK = 1 << 20


def _check_decodes(path: Path, name: str, encoding: str | None) -> str:
    """The codec to read `path` with, once a streaming pass found the whole file decodes
    (the same errors as `decode`, without holding the file)."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise NurtureError(f"{name}: unknown encoding {encoding!r}") from exc
    codec = encoding or "utf-8-sig"
    decoder = codecs.getincrementaldecoder(codec)()
    lines = 0
    with path.open("rb") as raw:
        for block in itertools.chain(iter(lambda: raw.read(_BLOCK), b""), [b""]):
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # The decoder's own buffer: the undecoded tail of the last block (never a
                # newline) followed by this one.
                buffered = exc.object if isinstance(exc.object, bytes) else block
                line = lines + buffered.count(b"\n", 0, exc.start) + 1
                if encoding:
                    raise NurtureError(f"{name}:{line}: not {encoding} ({exc.reason})") from exc
                raise NurtureError(f"{name}:{line}: not UTF-8 ({exc.reason}) — {_utf8_hint(path)}") from exc
            lines += block.count(b"\n")
    return codec


def _utf8_hint(path: Path) -> str:
    hint = "save it as UTF-8 (in Excel: 'CSV UTF-8') or pass --encoding with the file's encoding"
    decoder = codecs.getincrementaldecoder("cp932")()
    japanese = False
    try:
        with path.open("rb") as raw:
            for block in itertools.chain(iter(lambda: raw.read(_BLOCK), b""), [b""]):
                japanese = japanese or bool(_JAPANESE.search(decoder.decode(block, final=not block)))
    except UnicodeDecodeError:
        return hint
    if japanese:
        return "it looks like Japanese Excel's encoding (CP932/Shift_JIS): import it with --encoding cp932"
    return hint


def _csv_rows(text: str | io.TextIOBase, name: str) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline="") if isinstance(text, str) else text)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise NurtureError(f"{name}:1: unreadable CSV header: {exc}") from exc
    if not header or "email" not in [column.strip().lower() for column in header]:
        raise NurtureError(f"{name}:1: the header needs an 'email' column")
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            where = f"{name}:{start}"
            yield where, RowProblem(where, f"unreadable CSV: {exc}")
            if reader.line_num < start:  # nothing more was read: the file ends here
                return
            continue  # the reader goes on at the next line: one bad row does not stop the import
        if not values:  # a blank line: the next record starts after it
            continue
        where = f"{name}:{start}"
        if len(values) > len(header):
            yield where, RowProblem(where, "more values than header columns")
            continue
        yield where, dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))


def _json_lines(text: str | io.TextIOBase, name: str) -> Iterator[Record]:
    for number, line in enumerate(text.splitlines() if isinstance(text, str) else text, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, RowProblem(where, f"bad JSON: {exc.msg}")
            continue
        yield where, item if isinstance(item, dict) else RowProblem(where, "not an object")


def _json_array(text: str, name: str) -> Iterator[Record]:
    """The array's records, once the whole array was read (a syntax error anywhere in it,
    or an array that never closes, is refused before any record is handed out)."""
    return iter(list(_json_array_items(text, name)))


def _json_array_items(text: str, name: str) -> Iterator[Record]:
    decoder = json.JSONDecoder()
    index = len(text) - len(text.lstrip())
    if text[index : index + 1] != "[":
        raise NurtureError(f"{name}:1: a JSON import is an array of lead objects")
    index += 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text):
            raise NurtureError(f"{name}:{text.count(chr(10)) + 1}: bad JSON: the array is not closed with ']'")
        if text[index] == "]":
            if text[index + 1 :].strip():
                raise NurtureError(f"{name}:{text.count(chr(10), 0, index) + 1}: bad JSON: text after the array's ']'")
            return
        where = f"{name}:{text.count(chr(10), 0, index) + 1}"
        try:
            item, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise NurtureError(f"{name}:{exc.lineno}: bad JSON: {exc.msg}") from exc
        yield where, item if isinstance(item, dict) else RowProblem(where, "not an object")


_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def sendable_address(value: str) -> str:
    """The address as the sender will use it, or ValueError saying why it cannot be sent.

    An internationalised domain (`例え.jp`) is converted to its ASCII form (IDNA); a local
    part with non-ASCII characters would need SMTPUTF8, which nurture does not send, so it is
    refused here rather than failing at every send.
    """
    text = value.strip()
    if text.count("@") != 1:
        raise ValueError(f"not a valid email address: {value!r}")
    local, domain = text.rsplit("@", 1)
    if not local or not domain:
        raise ValueError(f"not a valid email address: {value!r}")
    if not local.isascii():
        raise ValueError(
            f"{value!r} has non-ASCII characters before the @, which needs SMTPUTF8; nurture sends ASCII addresses only"
        )
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError(f"not a valid email address: {value!r}")
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"not a valid email domain: {domain!r}") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"not a valid email address: {value!r}")
    return f"{local}@{ascii_domain.lower()}"
