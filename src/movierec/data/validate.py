"""Chunked validation of raw files into canonical tables, with reject files and reports.

The fast path parses a chunk of lines with Arrow's multithreaded CSV reader and checks the
value rules vectorised. A chunk that Arrow cannot parse (wrong column count, a non-number in
a numeric column, undecodable bytes, an empty line) is re-read line by line so that every bad
row gets its own reject record: source file, line number, field and reason. Valid rows of such
a chunk are kept: nothing valid is lost.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from movierec.data.dedup import DedupKeep, deduplicate, describe_dedup
from movierec.data.report import Reject, ValidationReport
from movierec.data.schema import CANONICAL, FileFormat, check_rules
from movierec.errors import InvalidDataError

logger = logging.getLogger(__name__)

_SEP = "\x1f"  # stands in for multi-character delimiters such as "::"
#: Longest field accepted (bytes); a longer one makes its row a reject, never an error.
MAX_FIELD_BYTES = 65_536
#: Longest line accepted (bytes).
MAX_LINE_BYTES = 4 * MAX_FIELD_BYTES


@dataclass(frozen=True)
class ValidatedTable:
    """A clean canonical table and the report of how it was obtained."""

    table: pa.Table
    report: ValidationReport


def _read_header(f: BinaryIO, fmt: FileFormat, source: str) -> int:
    """Check the header line; return the number of lines consumed (0 or 1)."""
    if fmt.header is None:
        return 0
    raw = f.readline()
    if not raw:
        raise InvalidDataError("empty file: no header line", source=source, line=1)
    try:
        text = raw.decode(fmt.encoding).lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise InvalidDataError(
            f"header is not {fmt.encoding} text: {e}", source=source, line=1
        ) from e
    found = tuple(h.strip().strip('"') for h in text.split(fmt.delimiter))
    if found != fmt.header:
        raise InvalidDataError(
            f"bad header: expected {','.join(fmt.header)!r}, found {text[:200]!r}",
            source=source,
            line=1,
        )
    return 1


def _skip_line(f: BinaryIO) -> bytes:
    """Read past the end of the current line; return what follows it in the last read."""
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return b""
        nl = chunk.find(b"\n")
        if nl >= 0:
            return chunk[nl + 1 :]


def _blocks(path: Path, fmt: FileFormat, chunk_bytes: int) -> Iterator[tuple[int, memoryview, int]]:
    """Yield ``(first line number, block of whole lines, number of lines)`` after the header.

    Blocks are views into one reused buffer (no copies): use a block before asking for the next.
    """
    source = str(path)
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            raise InvalidDataError("empty file", source=source, line=1)
        line_no = 1 + _read_header(f, fmt, source)
        buf = bytearray(chunk_bytes)
        carry = b""
        while True:
            if len(carry) >= len(buf):
                buf = bytearray(2 * len(carry))
            view = memoryview(buf)
            view[: len(carry)] = carry
            n = f.readinto(view[len(carry) :])
            total = len(carry) + n
            if total == 0:
                return
            end = total if n == 0 else buf.rfind(b"\n", 0, total) + 1
            if end == 0 and total > MAX_LINE_BYTES:
                # an overlong line: keep its head (rejected as too long), skip the rest of it
                yield line_no, memoryview(bytes(view[: MAX_LINE_BYTES + 1]) + b"\n"), 1
                line_no += 1
                carry = _skip_line(f)
                continue
            if end == 0:  # one line longer than the buffer: read into a bigger one
                carry = bytes(view[:total])
                buf = bytearray(2 * len(buf))
                continue
            n_lines = buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
            yield line_no, view[:end], n_lines
            line_no += n_lines
            carry = bytes(view[end:total])


def _arrow_parse(view: memoryview, fmt: FileFormat) -> pa.Table:
    delimiter = fmt.delimiter
    block: bytes | memoryview = view
    if fmt.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        block = bytes(view).decode(fmt.encoding).encode("utf-8")
    if len(delimiter) > 1:
        block = bytes(block).replace(delimiter.encode("utf-8"), _SEP.encode())
        delimiter = _SEP
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(block)),
        read_options=pacsv.ReadOptions(
            column_names=list(fmt.columns), block_size=max(1 << 20, len(block) // 2 + 1)
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"' if fmt.quoted else False,
            ignore_empty_lines=False,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=fmt.types,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )


def _convert(value: str, typ: pa.DataType) -> tuple[Any, str | None]:
    """Convert one raw field; return ``(value, error)``."""
    s = value.strip()
    if typ == pa.string():
        return value, None
    if s == "":
        return None, "missing value"
    if pa.types.is_integer(typ):
        try:
            return int(s), None
        except ValueError:
            return None, f"not an integer: {s[:40]!r}"
    try:
        f = float(s)
    except ValueError:
        return None, f"not a number: {s[:40]!r}"
    if not math.isfinite(f):
        return None, f"not a finite number: {s[:40]!r}"
    return f, None


def _slow_parse(
    block: bytes | memoryview, first_line: int, fmt: FileFormat, source: str, rejects: list[Reject]
) -> tuple[pa.Table, np.ndarray]:
    """Parse a block line by line; return the good rows and their line numbers."""
    cols: dict[str, list[Any]] = {c: [] for c in fmt.columns}
    lines: list[int] = []
    raw_lines = bytes(block).split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for offset, raw in enumerate(raw_lines):
        line_no = first_line + offset
        raw = raw.rstrip(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            reason = f"line longer than {MAX_LINE_BYTES} bytes ({len(raw)})"
            rejects.append(Reject(source, line_no, "*", reason, _clip(raw)))
            continue
        try:
            text = raw.decode(fmt.encoding)
        except UnicodeDecodeError as e:
            rejects.append(
                Reject(
                    source,
                    line_no,
                    "*",
                    f"undecodable bytes (not {fmt.encoding}): {e.reason}",
                    raw.decode("utf-8", "replace"),
                )
            )
            continue
        if text.strip() == "":
            rejects.append(Reject(source, line_no, "*", "empty line", text))
            continue
        try:
            fields = (
                next(csv.reader([text], delimiter=fmt.delimiter), [])
                if fmt.quoted
                else text.split(fmt.delimiter)
            )
        except csv.Error as e:
            rejects.append(Reject(source, line_no, "*", f"unparseable CSV: {e}", _clip(raw)))
            continue
        long = next((f for f in fields if len(f.encode()) > MAX_FIELD_BYTES), None)
        if long is not None:
            reason = f"field longer than {MAX_FIELD_BYTES} bytes ({len(long.encode())})"
            rejects.append(Reject(source, line_no, "*", reason, _clip(raw)))
            continue
        if len(fields) != len(fmt.columns):
            rejects.append(
                Reject(
                    source,
                    line_no,
                    "*",
                    f"wrong column count: expected {len(fmt.columns)}, found {len(fields)}",
                    text,
                )
            )
            continue
        row: list[Any] = []
        error: tuple[str, str] | None = None
        for name, value in zip(fmt.columns, fields, strict=True):
            typ = fmt.types[name]
            converted, err = _convert(value, typ)
            if err == "missing value" and name in fmt.nullable:
                err = None
            if err is not None:
                error = (name, err)
                break
            row.append(converted)
        if error is not None:
            rejects.append(Reject(source, line_no, error[0], error[1], text))
            continue
        for name, v in zip(fmt.columns, row, strict=True):
            cols[name].append(v)
        lines.append(line_no)
    table = pa.table({c: pa.array(cols[c], type=fmt.types[c]) for c in fmt.columns})
    return table, np.asarray(lines, dtype=np.int64)


def _clip(raw: bytes) -> str:
    """A raw line as it goes into a reject record: decoded leniently, at most 200 characters."""
    text = raw[:800].decode("utf-8", "replace")
    return text if len(text) <= 200 and len(raw) <= 800 else text[:200] + "..."


def _too_long(t: pa.Table) -> bool:
    """Whether any string field exceeds :data:`MAX_FIELD_BYTES` (the slow path rejects it)."""
    for col in t.columns:
        if pa.types.is_string(col.type) and col.length():
            longest = pc.max(pc.binary_length(col)).as_py()
            if longest is not None and longest > MAX_FIELD_BYTES:
                return True
    return False


def _null_problems(t: pa.Table, fmt: FileFormat) -> np.ndarray:
    bad = np.zeros(t.num_rows, dtype=bool)
    for c in fmt.columns:
        if c not in fmt.nullable and t[c].null_count:
            bad |= t[c].is_null().to_numpy(zero_copy_only=False)
    return bad


def _line_texts(block: memoryview, encoding: str) -> list[str]:
    return [x.rstrip(b"\r").decode(encoding, "replace") for x in bytes(block).split(b"\n")]


def validate_file(
    path: Path,
    fmt: FileFormat,
    *,
    chunk_bytes: int = 64 * 1024 * 1024,
    dedup: DedupKeep = "latest",
    source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ValidatedTable:
    """Validate one raw file into its canonical table.

    Args:
        path: The file to read.
        fmt: Its layout (see :mod:`movierec.data.schema`).
        chunk_bytes: Bytes parsed per chunk (whole lines).
        dedup: ``"latest"`` keeps, for each key, the row with the largest timestamp (ties: the
            later line); ``"first"`` keeps the first line. Tables without timestamps keep the
            later line for ``"latest"``.
        source: Name used in reject records (default: the path).
        progress: Called with the number of bytes of each chunk once it is checked.

    Returns:
        The clean table (canonical schema) and its report.

    Raises:
        InvalidDataError: The file is empty or its header is wrong (nothing can be read).
    """
    src = source or str(path)
    report = ValidationReport(source=src, kind=fmt.kind)
    rejects: list[Reject] = []
    parts: list[pa.Table] = []
    line_parts: list[np.ndarray] = []
    schema = CANONICAL[fmt.kind]
    for first_line, block, n_lines in _blocks(path, fmt, chunk_bytes):
        report.input_rows += n_lines
        try:
            raw = _arrow_parse(block, fmt)
            if raw.num_rows != n_lines:
                raise pa.ArrowInvalid("row count differs from line count")
            lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
            null_bad = _null_problems(raw, fmt)
            if null_bad.any():
                raise pa.ArrowInvalid("missing values")
            if _too_long(raw):
                raise pa.ArrowInvalid("field too long")
        except (pa.ArrowInvalid, UnicodeDecodeError):
            raw, lines = _slow_parse(block, first_line, fmt, src, rejects)
        canon = fmt.to_canonical(raw)
        bad = np.zeros(canon.num_rows, dtype=bool)
        texts: list[str] | None = None
        for p in check_rules(fmt.kind, canon):
            new = p.mask & ~bad
            if not new.any():
                continue
            texts = texts if texts is not None else _line_texts(block, fmt.encoding)
            for i in np.flatnonzero(new):
                offset = int(lines[i]) - first_line
                raw = texts[offset] if offset < len(texts) else ""
                rejects.append(Reject(src, int(lines[i]), p.field, p.reason, raw))
            bad |= p.mask
        if bad.any():
            keep = np.flatnonzero(~bad)
            canon, lines = canon.take(keep), lines[keep]
        parts.append(canon.cast(schema))
        line_parts.append(lines)
        if progress is not None:
            progress(len(block))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    all_lines = np.concatenate(line_parts) if line_parts else np.zeros(0, np.int64)
    table, dup_rejects = deduplicate(table, fmt.kind, all_lines, dedup, src)
    rejects.sort(key=lambda r: r.line)
    report.rejects = rejects + dup_rejects
    report.reject_rows = len(rejects)
    report.duplicate_rows = len(dup_rejects)
    report.clean_rows = table.num_rows
    report.dedup_rule = describe_dedup(fmt.kind, dedup)
    logger.info(
        "validated %s: %d rows, %d clean, %d rejected, %d duplicates",
        src,
        report.input_rows,
        report.clean_rows,
        report.reject_rows,
        report.duplicate_rows,
    )
    return ValidatedTable(table, report)
