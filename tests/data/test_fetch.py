"""The download path against a real local HTTP server serving zips built here."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from movierec.data.movielens import fetch_release, load_release, resolve_dataset
from movierec.errors import DatasetUnavailableError, DownloadError
from movierec.settings import Settings

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,1,3.0,964982704\n"
MOVIES = "movieId,title,genres\n1,Toy Story (1995),Animation\n"


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "mirror"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root.joinpath(".url").write_text(f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()
    server.server_close()


def _publish(root: Path, name: str, payload: bytes, md5: str | None = None) -> None:
    (root / f"{name}.zip").write_bytes(payload)
    digest = md5 or hashlib.md5(payload).hexdigest()
    (root / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {digest}\n")


def _settings(settings: Settings, mirror: Path) -> Settings:
    return settings.model_copy(
        update={"mirror": mirror.joinpath(".url").read_text(), "data_dir": None}
    )


def _leftovers(s: Settings) -> list[str]:
    return sorted(p.name for p in s.datasets_dir.iterdir()) if s.datasets_dir.exists() else []


def test_download_verify_unpack(settings: Settings, mirror: Path) -> None:
    payload = _zip({"ml-latest-small/ratings.csv": RATINGS, "ml-latest-small/movies.csv": MOVIES})
    _publish(mirror, "ml-latest-small", payload)
    s = _settings(settings, mirror)
    seen: list[int] = []
    path = fetch_release("ml-latest-small", s, progress=lambda done, total: seen.append(done))
    assert path == s.datasets_dir / "ml-latest-small"
    assert seen[-1] == len(payload)
    assert load_release(path).tables["ratings"].table.num_rows == 2
    assert _leftovers(s) == ["ml-latest-small"]
    # resolve finds the cache without the network
    assert resolve_dataset("ml-latest-small", s.model_copy(update={"offline": True})) == path


def test_resolve_downloads_when_absent(settings: Settings, mirror: Path) -> None:
    _publish(
        mirror,
        "ml-1m",
        _zip(
            {
                "ml-1m/ratings.dat": "1::1::5::978300760\n",
                "ml-1m/movies.dat": "1::Toy Story (1995)::Animation\n",
            }
        ),
    )
    s = _settings(settings, mirror)
    path = resolve_dataset("ml-1m", s)
    assert load_release(path).layout.name == "dat"


def test_checksum_mismatch_leaves_nothing(settings: Settings, mirror: Path) -> None:
    payload = _zip({"ml-100k/u.data": "1\t1\t5\t881250949\n"})
    _publish(mirror, "ml-100k", payload, md5="0" * 32)
    s = _settings(settings, mirror)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_release("ml-100k", s)
    assert _leftovers(s) == []


def test_truncated_zip_leaves_nothing(settings: Settings, mirror: Path) -> None:
    payload = _zip(
        {"ml-latest-small/ratings.csv": RATINGS * 200, "ml-latest-small/movies.csv": MOVIES}
    )
    truncated = payload[: len(payload) // 2]
    _publish(
        mirror, "ml-latest-small", truncated
    )  # md5 of the truncated bytes: only the zip check can tell
    s = _settings(settings, mirror)
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        fetch_release("ml-latest-small", s)
    assert _leftovers(s) == []


def test_missing_zip_is_a_clear_error(settings: Settings, mirror: Path) -> None:
    (mirror / "ml-20m.zip.md5").write_text("0" * 32)
    s = _settings(settings, mirror)
    with pytest.raises(DatasetUnavailableError, match="HTTP 404"):
        resolve_dataset("ml-20m", s)
    assert _leftovers(s) == []


def test_missing_checksum_is_refused_unless_allowed(settings: Settings, mirror: Path) -> None:
    (mirror / "ml-latest-small.zip").write_bytes(
        _zip({"ml-latest-small/ratings.csv": RATINGS, "ml-latest-small/movies.csv": MOVIES})
    )
    s = _settings(settings, mirror)
    with pytest.raises(DownloadError, match="no checksum"):
        fetch_release("ml-latest-small", s)
    lax = s.model_copy(update={"require_checksum": False})
    assert fetch_release("ml-latest-small", lax).is_dir()


def test_unreachable_mirror_names_the_variables(settings: Settings) -> None:
    s = settings.model_copy(
        update={"mirror": "http://127.0.0.1:9", "download_timeout_s": 2.0, "data_dir": None}
    )
    with pytest.raises(DatasetUnavailableError) as e:
        resolve_dataset("ml-latest-small", s)
    assert "MOVIEREC_DATA_DIR" in str(e.value)
