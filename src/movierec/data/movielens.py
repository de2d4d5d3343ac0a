"""MovieLens releases: the official layouts, their detection, download and loading."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from movierec.data.dedup import DedupKeep
from movierec.data.schema import (
    CSV_LINKS,
    CSV_MOVIES,
    CSV_RATINGS,
    CSV_TAGS,
    DAT_MOVIES,
    DAT_RATINGS,
    DAT_TAGS,
    U_DATA,
    U_ITEM,
    FileFormat,
    TableKind,
)
from movierec.data.validate import ValidatedTable, validate_file
from movierec.errors import DatasetUnavailableError, DownloadError
from movierec.settings import Settings

logger = logging.getLogger(__name__)

LayoutName = Literal["csv", "dat", "ml-100k"]
ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Release:
    """An official GroupLens release: its zip name and layout."""

    name: str
    zip_name: str
    layout: LayoutName


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("ml-latest-small", "ml-latest-small.zip", "csv"),
        Release("ml-latest", "ml-latest.zip", "csv"),
        Release("ml-100k", "ml-100k.zip", "ml-100k"),
        Release("ml-1m", "ml-1m.zip", "dat"),
        Release("ml-10m", "ml-10m.zip", "dat"),
        Release("ml-20m", "ml-20m.zip", "csv"),
        Release("ml-25m", "ml-25m.zip", "csv"),
        Release("ml-32m", "ml-32m.zip", "csv"),
    )
}

#: Files of each layout: (file name, format, required).
LAYOUT_FILES: dict[LayoutName, tuple[tuple[str, FileFormat, bool], ...]] = {
    "csv": (
        ("ratings.csv", CSV_RATINGS, True),
        ("movies.csv", CSV_MOVIES, True),
        ("links.csv", CSV_LINKS, False),
        ("tags.csv", CSV_TAGS, False),
    ),
    "dat": (
        ("ratings.dat", DAT_RATINGS, True),
        ("movies.dat", DAT_MOVIES, True),
        ("tags.dat", DAT_TAGS, False),
    ),
    "ml-100k": (
        ("u.data", U_DATA, True),
        ("u.item", U_ITEM, True),
    ),
}


@dataclass(frozen=True)
class Layout:
    """A detected release folder: its layout and the files present, by canonical kind."""

    name: LayoutName
    root: Path
    files: dict[TableKind, tuple[Path, FileFormat]]


def _layout_in(folder: Path) -> Layout | None:
    for name, specs in LAYOUT_FILES.items():
        if all((folder / f).is_file() for f, _, required in specs if required):
            files = {fmt.kind: (folder / f, fmt) for f, fmt, _ in specs if (folder / f).is_file()}
            return Layout(name, folder, files)
    return None


def detect_layout(folder: Path) -> Layout:
    """Detect the MovieLens layout of a folder (or of its single subfolder, as zips unpack).

    Raises:
        DatasetUnavailableError: No known layout is there.
    """
    found = _layout_in(folder)
    if found is None and folder.is_dir():
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subdirs) == 1:
            found = _layout_in(subdirs[0])
    if found is None:
        raise DatasetUnavailableError(
            f"{folder} holds no MovieLens release: expected ratings.csv+movies.csv, "
            "ratings.dat+movies.dat, or u.data+u.item"
        )
    return found


def resolve_dataset(name: str, settings: Settings, data_dir: Path | None = None) -> Path:
    """Find a release on disk, or download it, and return its folder.

    Order: ``name`` as a folder path; ``data_dir/name`` (``--data-dir`` or
    ``MOVIEREC_DATA_DIR``); the download cache ``MOVIEREC_HOME/datasets/name``; a download
    from ``MOVIEREC_MIRROR`` (unless ``MOVIEREC_OFFLINE``).

    Raises:
        DatasetUnavailableError: Not on disk and not downloadable, with what to set.
    """
    as_path = Path(name)
    if as_path.is_dir():
        return as_path
    base = data_dir or settings.data_dir
    if base is not None and (base / name).is_dir():
        return base / name
    cached = settings.datasets_dir / name
    if cached.is_dir():
        return cached
    if name not in RELEASES:
        raise DatasetUnavailableError(
            f"unknown dataset {name!r}: not a folder, not in MOVIEREC_DATA_DIR={base}, and not "
            f"an official release ({', '.join(RELEASES)})"
        )
    hint = (
        f"set MOVIEREC_DATA_DIR to a folder holding {name}/ (now: {base}), or "
        f"MOVIEREC_MIRROR to a reachable mirror of the GroupLens zips (now: {settings.mirror})"
    )
    if settings.offline:
        raise DatasetUnavailableError(f"{name} is not on disk and MOVIEREC_OFFLINE is set: {hint}")
    try:
        return fetch_release(name, settings)
    except DownloadError as e:
        raise DatasetUnavailableError(
            f"{name} is not on disk and could not be downloaded ({e}): {hint}"
        ) from e


_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


def _fetch_md5(client: httpx.Client, url: str) -> str | None:
    try:
        resp = client.get(url)
    except httpx.HTTPError as e:
        logger.warning("could not fetch checksum %s: %s", url, e)
        return None
    if resp.status_code != 200:
        return None
    m = _MD5_RE.search(resp.text)
    return m.group(1).lower() if m else None


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in zf.infolist():
        target = (dest / member.filename).resolve()
        if not str(target).startswith(str(root) + os.sep) and target != root:
            raise DownloadError(f"archive member escapes the target folder: {member.filename}")
    zf.extractall(dest)


def fetch_release(name: str, settings: Settings, progress: ProgressFn | None = None) -> Path:
    """Download, verify and unpack an official release into the cache, atomically.

    The zip is streamed to a temporary file, its MD5 is checked against the mirror's
    ``<zip>.md5``, its CRCs are tested, it is unpacked into a temporary folder and only then
    renamed to ``MOVIEREC_HOME/datasets/<name>``. On any failure nothing is left behind.

    Args:
        name: Release name (see :data:`RELEASES`).
        settings: Mirror, cache location, timeout, checksum policy.
        progress: Called with ``(bytes so far, total or None)`` while downloading.

    Raises:
        DownloadError: Network failure, checksum mismatch, corrupt or truncated zip.
    """
    release = RELEASES[name]
    final = settings.datasets_dir / name
    if final.is_dir():
        return final
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    part = settings.datasets_dir / f".{name}.{tag}.zip.part"
    staging = settings.datasets_dir / f".{name}.{tag}.extract"
    url = f"{settings.mirror.rstrip('/')}/{release.zip_name}"
    logger.info("downloading %s", url)
    try:
        with httpx.Client(timeout=settings.download_timeout_s, follow_redirects=True) as client:
            expected_md5 = _fetch_md5(client, url + ".md5")
            if expected_md5 is None and settings.require_checksum:
                raise DownloadError(
                    f"no checksum at {url}.md5 (set MOVIEREC_REQUIRE_CHECKSUM=false to skip)"
                )
            md5 = hashlib.md5()
            try:
                with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise DownloadError(f"GET {url} answered HTTP {resp.status_code}")
                    total = (
                        int(resp.headers["content-length"])
                        if "content-length" in resp.headers
                        else None
                    )
                    done = 0
                    with part.open("wb") as f:
                        for chunk in resp.iter_bytes(1 << 20):
                            f.write(chunk)
                            md5.update(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                        f.flush()
                        os.fsync(f.fileno())
            except httpx.HTTPError as e:
                raise DownloadError(f"GET {url} failed: {e}") from e
        if expected_md5 is not None and md5.hexdigest() != expected_md5:
            raise DownloadError(
                f"checksum mismatch for {url}: md5 {md5.hexdigest()}, expected {expected_md5}"
            )
        try:
            with zipfile.ZipFile(part) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise DownloadError(f"corrupt member {bad} in {url}")
                staging.mkdir()
                _safe_extract(zf, staging)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise DownloadError(f"corrupt or truncated zip from {url}: {e}") from e
        layout = detect_layout(staging)
        os.replace(layout.root, final)
        logger.info("unpacked %s into %s", name, final)
        return final
    except DatasetUnavailableError as e:
        raise DownloadError(f"{url} does not hold a MovieLens release: {e}") from e
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class LoadedRelease:
    """The validated canonical tables of one release folder."""

    layout: Layout
    tables: dict[TableKind, ValidatedTable]


def load_release(
    folder: Path,
    *,
    kinds: tuple[TableKind, ...] = ("ratings", "movies", "links", "tags"),
    chunk_bytes: int = 64 * 1024 * 1024,
    dedup: DedupKeep = "latest",
) -> LoadedRelease:
    """Validate the files of a release folder into canonical tables.

    Optional files (links, tags) that are absent are skipped.
    """
    layout = detect_layout(folder)
    tables: dict[TableKind, ValidatedTable] = {}
    for kind in kinds:
        if kind in layout.files:
            path, fmt = layout.files[kind]
            tables[kind] = validate_file(path, fmt, chunk_bytes=chunk_bytes, dedup=dedup)
    return LoadedRelease(layout, tables)
