from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from movierec.data.synthetic import SynthConfig, generate
from movierec.settings import Settings, get_settings

# no per-example deadline: timing is measured by benchmarks, and a shared 2-core machine made a
# 200 ms deadline fail on a vocabulary round trip (283 ms under load)
hypothesis_settings.register_profile("movierec", deadline=None)
hypothesis_settings.load_profile("movierec")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with a fresh MOVIEREC_HOME under tmp_path (and the cache cleared)."""
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MOVIEREC_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MovieLens folder (CI always sets MOVIEREC_DATA_DIR)."""
    value = os.environ.get("MOVIEREC_DATA_DIR")
    if not value or not (Path(value) / "ml-latest-small").is_dir():
        pytest.skip("MOVIEREC_DATA_DIR is not set to a folder holding ml-latest-small/")
    return Path(value)


@pytest.fixture(scope="session")
def synth_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic release in the ml-latest CSV layout."""
    out = tmp_path_factory.mktemp("synth") / "synth-20k"
    generate(out, SynthConfig(ratings=20_000, seed=7))
    return out


def write(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path
