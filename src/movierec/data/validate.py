"""Chunked validation of raw files into canonical tables, with reject files and reports.

The fast path parses a chunk of lines with Arrow's multithreaded CSV reader and checks the
value rules vectorised. A chunk that Arrow cannot parse (wrong column count, a non-number in
a numeric column, undecodable bytes, an empty line) is re-read line by line so that every bad
row gets its own reject record: source file, line number, field and reason. Valid rows of such
a chunk are kept: nothing valid is lost.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec.data.keys import key_codes, strictly_increasing_pairs
from movierec.data.schema import CANONICAL, KEYS, FileFormat, TableKind, check_rules
from movierec.errors import InvalidDataError, RejectRateExceededError

logger = logging.getLogger(__name__)

DedupKeep = Literal["latest", "first"]
_SEP = "\x1f"  # stands in for multi-character delimiters such as "::"


@dataclass(frozen=True)
class Reject:
    """One rejected row."""

    source: str
    line: int
    field: str
    reason: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the reject."""
        return {
            "source": self.source,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw,
        }


@dataclass
class ValidationReport:
    """Counts and rejects of one validated file.

    ``clean_rows = input_rows - reject_rows - duplicate_rows``; ``reject_rate`` is
    ``reject_rows / input_rows``. Duplicates are valid rows superseded by the dedup rule.
    """

    source: str
    kind: str
    input_rows: int = 0
    clean_rows: int = 0
    reject_rows: int = 0
    duplicate_rows: int = 0
    dedup_rule: str = ""
    rejects: list[Reject] = field(default_factory=list)
    reject_file: str | None = None

    @property
    def reject_rate(self) -> float:
        """Fraction of input rows rejected (0 for an empty file)."""
        return self.reject_rows / self.input_rows if self.input_rows else 0.0

    def to_dict(self, max_rejects: int | None = None) -> dict[str, Any]:
        """Return the JSON report (at most ``max_rejects`` rejects listed)."""
        listed = self.rejects if max_rejects is None else self.rejects[:max_rejects]
        return {
            "source": self.source,
            "kind": self.kind,
            "input_rows": self.input_rows,
            "clean_rows": self.clean_rows,
            "reject_rows": self.reject_rows,
            "reject_rate": self.reject_rate,
            "duplicate_rows": self.duplicate_rows,
            "dedup_rule": self.dedup_rule,
            "reject_file": self.reject_file,
            "rejects_listed": len(listed),
            "rejects": [r.to_dict() for r in listed],
        }

    def write(self, path: Path, max_rejects: int | None = None) -> None:
        """Write the JSON report to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(max_rejects), indent=2))

    def write_rejects(self, path: Path) -> None:
        """Write every reject (one JSON object a line) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in self.rejects:
                f.write(json.dumps(r.to_dict()) + "\n")
        self.reject_file = str(path)

    def check_rate(self, max_reject_rate: float | None) -> None:
        """Raise :class:`RejectRateExceededError` when the reject rate is above the limit."""
        if max_reject_rate is not None and self.reject_rate > max_reject_rate:
            err = RejectRateExceededError(
                f"{self.reject_rows} of {self.input_rows} rows rejected "
                f"({self.reject_rate:.2%}), above --max-reject-rate {max_reject_rate:.2%}",
                source=self.source,
            )
            err.report = self
            raise err


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
            f"bad header: expected {','.join(fmt.header)!r}, found {text!r}",
            source=source,
            line=1,
        )
    return 1


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
            view = memoryview(buf)
            view[: len(carry)] = carry
            n = f.readinto(view[len(carry) :])
            total = len(carry) + n
            if total == 0:
                return
            end = total if n == 0 else buf.rfind(b"\n", 0, total) + 1
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
        if fmt.quoted:
            fields = next(csv.reader([text], delimiter=fmt.delimiter), [])
        else:
            fields = text.split(fmt.delimiter)
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


def describe_dedup(kind: TableKind, keep: DedupKeep) -> str:
    """Return the dedup rule in words, as written into reports."""
    key = ", ".join(KEYS[kind])
    if keep == "first":
        return f"one row per ({key}): the first line wins"
    if "timestamp" in CANONICAL[kind].names and "timestamp" not in KEYS[kind]:
        return f"one row per ({key}): the latest timestamp wins, ties go to the later line"
    return f"one row per ({key}): the later line wins"


def dedup_order(
    keys: np.ndarray, timestamps: np.ndarray | None, order: np.ndarray, keep: DedupKeep
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide which rows survive deduplication: the one shared rule of movierec.

    Args:
        keys: int64 key code per row.
        timestamps: Event time per row, or ``None`` when the table has none.
        order: Arrival order per row (line number or sequence); larger is later.
        keep: ``"latest"`` or ``"first"``.

    Returns:
        ``(kept, dropped, winner_of_dropped)``: indices of kept rows (sorted), of dropped rows,
        and for each dropped row the index of the row that superseded it.
    """
    n = keys.shape[0]
    if n < 2 or bool(np.all(keys[1:] > keys[:-1])):  # sorted and unique: the common case
        return np.arange(n), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if keep == "first":
        idx = np.lexsort((order, keys))
        first_of_group = np.ones(n, dtype=bool)
        first_of_group[1:] = keys[idx][1:] != keys[idx][:-1]
        winner_pos = np.maximum.accumulate(np.where(first_of_group, np.arange(n), 0))
    else:
        sort_keys = (order, keys) if timestamps is None else (order, timestamps, keys)
        idx = np.lexsort(sort_keys)
        last_of_group = np.ones(n, dtype=bool)
        last_of_group[:-1] = keys[idx][1:] != keys[idx][:-1]
        # the winner of each group is its last element: propagate its position backwards
        pos = np.where(last_of_group, np.arange(n), n)
        winner_pos = np.minimum.accumulate(pos[::-1])[::-1]
        first_of_group = last_of_group
    kept_mask = first_of_group
    kept = np.sort(idx[kept_mask])
    dropped = idx[~kept_mask]
    winners = idx[winner_pos[~kept_mask]]
    return kept, dropped, winners


def deduplicate(
    table: pa.Table, kind: TableKind, lines: np.ndarray, keep: DedupKeep, source: str
) -> tuple[pa.Table, list[Reject]]:
    """Apply :func:`dedup_order` to a canonical table; return it and the duplicate records."""
    if table.num_rows < 2:
        return table, []
    cols = KEYS[kind]
    if len(cols) == 2 and strictly_increasing_pairs(
        table[cols[0]].to_numpy(), table[cols[1]].to_numpy()
    ):
        return table, []
    keys = key_codes(table, cols)
    ts = None
    if "timestamp" in table.column_names and "timestamp" not in KEYS[kind]:
        ts = table["timestamp"].to_numpy()
    kept, dropped, winners = dedup_order(keys, ts, lines, keep)
    if dropped.size == 0:
        return table, []
    key_name = ",".join(KEYS[kind])
    dups = [
        Reject(
            source,
            int(lines[d]),
            key_name,
            f"duplicate key; superseded by line {int(lines[w])} ({keep} wins)",
            "",
        )
        for d, w in zip(dropped, winners, strict=True)
    ]
    dups.sort(key=lambda r: r.line)
    return table.take(kept), dups
