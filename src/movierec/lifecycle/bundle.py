"""Model bundles: a directory per version, published atomically, behind a ``CURRENT`` pointer.

Publish order (as Gorse does it): write the new version under a temporary name, fsync every
file, rename it to its version, then replace ``CURRENT`` atomically, then prune old versions.
A crash at any point leaves ``CURRENT`` naming a complete bundle. Loading verifies completely:
plain version, strategy and file names only, every file on disk listed in ``manifest.json``
and matching its sha256; a bundle that does not verify is refused with a message that names
no absolute path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec import __version__
from movierec.data.vocab import Vocabulary
from movierec.errors import MovierecError
from movierec.hashing import file_digest
from movierec.models.base import Recommender, SharedParts
from movierec.models.persist import history_arrays, history_from
from movierec.redact import redact_any
from movierec.strategies import load

logger = logging.getLogger(__name__)

#: 2: one shared training history per bundle (``history.npz``), ``ranked``'s sources stored
#: once (a ``<source>.ref`` file names the bundle's model). 1: every model kept its own copies.
BUNDLE_FORMAT = 2
HISTORY = "history.npz"
CURRENT = "CURRENT"
#: A bundle version: the folder name publish_bundle gives (no separators, no "..").
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: One path component of a file inside a bundle.
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: A strategy name as bundles store it.
STRATEGY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST = "manifest.json"


class BundleError(MovierecError):
    """A bundle is missing, incomplete, corrupt or of an unknown format."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for p in sorted((d for d in path.rglob("*") if d.is_dir()), reverse=True):
        _fsync_dir(p)
    _fsync_dir(path)


def git_commit() -> str | None:
    """The checkout's commit (read from .git, no subprocess), or None outside a checkout."""
    head = Path(__file__).resolve().parents[3] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: models by strategy name, vocabularies and the catalog."""

    version: str
    path: Path
    manifest: dict[str, Any]
    models: dict[str, Recommender]
    users: Vocabulary
    items: Vocabulary
    movies: pa.Table

    @property
    def default_strategy(self) -> str:
        """The strategy answering when none is asked for."""
        return str(self.manifest["default_strategy"])


def current_version(root: Path) -> str | None:
    """The version ``CURRENT`` points to (``None`` when nothing was published)."""
    try:
        return (root / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def list_versions(root: Path) -> list[str]:
    """Published versions, oldest first."""
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def set_current(root: Path, version: str) -> None:
    """Point ``CURRENT`` at an existing version atomically (write, fsync, rename, fsync dir)."""
    if not (root / check_version(version) / MANIFEST).exists():
        raise BundleError(f"no bundle {version}")
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with tmp.open("w") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)


def publish_bundle(
    root: Path,
    models: dict[str, Recommender],
    users: Vocabulary,
    items: Vocabulary,
    movies: pa.Table,
    *,
    default_strategy: str,
    fingerprint: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    retention: int = 5,
    make_current: bool = True,
) -> str:
    """Write a new bundle version and (by default) make it current; return its version.

    Args:
        root: The bundles folder (``MOVIEREC_HOME/bundles``).
        models: Fitted models by strategy name (all on the same vocabularies).
        users: User vocabulary of the training data.
        items: Item vocabulary of the training data.
        movies: Canonical movies table (title, year, genres) for the items.
        default_strategy: Strategy used when a request names none.
        fingerprint: Data fingerprint (sha256 and counts) of the training data.
        metrics: Offline metrics to record.
        extra: Anything else to record in the manifest (dataset, run ids, ...).
        retention: Versions to keep (the current and the previous one are always kept).
        make_current: Swap ``CURRENT`` to the new version.
    """
    if default_strategy not in models:
        raise ValueError(f"default strategy {default_strategy!r} is not in the bundle")
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S")
    version = f"{stamp}-{str(fingerprint.get('sha256', ''))[:8]}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{version}"
    try:
        tmp.mkdir()
        first = next(iter(models.values()))
        for name, model in models.items():
            if model.history.shape != first.history.shape or model.history.nnz != first.history.nnz:
                raise ValueError(f"model {name} was trained on other data than {first.name}")
            model.save(tmp / "models" / name, with_history=False)
        with (tmp / HISTORY).open("wb") as f:
            np.savez(f, allow_pickle=False, **history_arrays(first.history, first.history_ts))
        _share_sources(tmp / "models")
        with (tmp / "vocab.npz").open("wb") as f:
            np.savez(f, allow_pickle=False, user_ids=users.ids, item_ids=items.ids)
        pq.write_table(movies, tmp / "movies.parquet")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": version,
            "created": datetime.now(tz=UTC).isoformat(),
            "default_strategy": default_strategy,
            "strategies": {n: m.describe() for n, m in models.items()},
            "data_fingerprint": fingerprint,
            "metrics": metrics or {},
            "code_version": __version__,
            "git_commit": git_commit(),
            "n_users": len(users),
            "n_items": len(items),
            "files": {str(p.relative_to(tmp)): file_digest(p) for p in files},
            **redact_any(extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _fsync_tree(tmp)
        os.rename(tmp, root / version)
        _fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if make_current:
        previous = current_version(root)
        set_current(root, version)
        prune(root, retention, keep={version, previous} - {None})  # type: ignore[arg-type]
    logger.info("published bundle %s", version)
    return version


def _share_sources(models_dir: Path) -> None:
    """Store each of ``ranked``'s sources once.

    A source equal to the bundle's own model of the same name (same config, same arrays)
    becomes a ``<name>.ref`` file naming that model.
    """
    for src in sorted(models_dir.glob("*/sources/*")):
        own = models_dir / src.name
        if src.is_dir() and own.is_dir() and _same_model(own, src):
            shutil.rmtree(src)
            (src.parent / f"{src.name}.ref").write_text(src.name + "\n")


def _same_model(a: Path, b: Path) -> bool:
    """Whether two saved models hold the same files with the same content.

    Arrays are compared as arrays (npz archives carry their write time).
    """
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    for rel in files_a:
        pa_, pb_ = a / rel, b / rel
        if rel.suffix == ".npz":
            with np.load(pa_, allow_pickle=False) as x, np.load(pb_, allow_pickle=False) as y:
                if sorted(x.files) != sorted(y.files) or not all(
                    x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x.files
                ):
                    return False
        elif rel.suffix == ".json":
            if json.loads(pa_.read_text()) != json.loads(pb_.read_text()):
                return False
        elif pa_.read_bytes() != pb_.read_bytes():
            return False
    return True


def prune(root: Path, retention: int, keep: set[str] | None = None) -> list[str]:
    """Delete the oldest versions beyond ``retention`` (never those in ``keep`` nor CURRENT)."""
    keep = set(keep or set())
    cur = current_version(root)
    if cur:
        keep.add(cur)
    versions = list_versions(root)
    removable = [v for v in versions[: max(0, len(versions) - retention)] if v not in keep]
    for v in removable:
        shutil.rmtree(root / v, ignore_errors=True)
    return removable


def check_version(version: str) -> str:
    """``version`` when it is a plain bundle name.

    Raises:
        BundleError: Anything else (separators, ``..``, empty, too long).
    """
    if not VERSION_PATTERN.fullmatch(version) or ".." in version:
        raise BundleError(f"not a bundle version: {version[:80]!r}")
    return version


def _check_files(version: str, path: Path, listed: Any) -> None:
    """Every file on disk is listed, every listed file exists under its exact digest."""
    if not isinstance(listed, dict) or not listed:
        raise BundleError(f"bundle {version}: manifest 'files' must be a non-empty mapping")
    for rel, digest in listed.items():
        parts = rel.split("/") if isinstance(rel, str) else []
        if not parts or not all(_PART.fullmatch(p) and p != ".." for p in parts):
            raise BundleError(
                f"bundle {version}: a file name in the manifest is not a plain relative path"
            )
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(f"bundle {version}: bad digest for {rel}")
    on_disk: set[str] = set()
    for p in path.rglob("*"):
        if p.is_symlink():
            raise BundleError(f"bundle {version}: links are not allowed ({p.relative_to(path)})")
        rel = p.relative_to(path).as_posix()
        if p.is_file() and rel != MANIFEST:
            on_disk.add(rel)
    unlisted = sorted(on_disk - set(listed))
    if unlisted:
        raise BundleError(f"bundle {version}: files not in the manifest: {unlisted[:5]}")
    for rel, digest in listed.items():
        if rel not in on_disk:
            raise BundleError(f"bundle {version}: missing file {rel}")
        if file_digest(path / rel) != digest:
            raise BundleError(f"bundle {version}: checksum mismatch for {rel}")


def read_manifest(root: Path, version: str) -> dict[str, Any]:
    """The verified manifest of a bundle: strict names, and every file accounted for.

    Raises:
        BundleError: Bad version name, unreadable manifest, unknown format, a strategy or file
            name that is not plain, an unlisted, missing or changed file. Messages name the
            version and relative paths only.
    """
    path = root / check_version(version)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        reason = type(e).__name__ if isinstance(e, OSError) else str(e)[:200]
        raise BundleError(f"bundle {version}: unreadable manifest ({reason})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        if isinstance(fmt, int) and 0 < fmt < BUNDLE_FORMAT:
            raise BundleError(
                f"bundle {version} has format {fmt}, written by an older movierec (this one reads "
                f"format {BUNDLE_FORMAT}): publish a new one with `movierec train`"
            )
        raise BundleError(f"bundle {version}: unknown format {fmt!r}")
    strategies = manifest.get("strategies")
    if not isinstance(strategies, dict) or not strategies:
        raise BundleError(f"bundle {version}: manifest 'strategies' must be a non-empty mapping")
    for name in strategies:
        if not STRATEGY_PATTERN.fullmatch(str(name)):
            raise BundleError(f"bundle {version}: strategy name {str(name)[:80]!r} is not allowed")
    if manifest.get("default_strategy") not in strategies:
        raise BundleError(f"bundle {version}: default strategy is not in the bundle")
    _check_files(version, path, manifest.get("files"))
    return manifest


def load_bundle(root: Path, version: str | None = None) -> Bundle:
    """Load and verify a bundle (default: the current one).

    Raises:
        BundleError: No bundle, or one that does not verify (see :func:`read_manifest`) or
            does not load.
    """
    version = version or current_version(root)
    if version is None:
        raise BundleError("no bundle published yet (run `movierec train`)")
    manifest = read_manifest(root, version)
    path = root / version
    t0 = time.perf_counter()
    try:
        with np.load(path / "vocab.npz", allow_pickle=False) as v:
            users, items = Vocabulary(v["user_ids"]), Vocabulary(v["item_ids"])
        with np.load(path / HISTORY, allow_pickle=False) as h:
            history, history_ts = history_from(h, (len(users), len(items)))
        models: dict[str, Recommender] = {}
        # models that others refer to (no sources of their own) first, then the composites
        names = sorted(
            manifest["strategies"], key=lambda n: (path / "models" / n / "sources").exists()
        )
        for n in names:
            models[n] = load(path / "models" / n, SharedParts(history, history_ts, models))
        movies = pq.read_table(path / "movies.parquet")
    except Exception as e:  # a bundle that verifies but does not load is refused too
        reason = str(e).replace(str(path), version)[:300]
        raise BundleError(f"bundle {version}: cannot load: {reason}") from e
    for name, model in models.items():
        if model.n_users != len(users) or model.n_items != len(items):
            raise BundleError(f"bundle {version}: model {name} does not match the vocabularies")
    logger.info("loaded bundle %s in %.2f s", version, time.perf_counter() - t0)
    return Bundle(version, path, manifest, models, users, items, movies)


def newest_verified(root: Path, skip: set[str]) -> str | None:
    """The newest version (not in ``skip``) whose files verify, or None."""
    for version in reversed(list_versions(root)):
        if version in skip:
            continue
        try:
            read_manifest(root, version)
        except BundleError:
            continue
        return version
    return None
