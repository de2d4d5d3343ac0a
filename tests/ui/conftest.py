from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings
from tests.helpers import Server


@pytest.fixture(scope="session")
def ui_home(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a bundle trained on real ml-latest-small (fast strategies)."""
    home = tmp_path_factory.mktemp("ui") / "home"
    train_and_publish(
        Settings(home=home, data_dir=data_dir),
        "ml-latest-small",
        "itemknn",
        strategies=("popularity", "itemknn", "ease", "mf"),
        evaluate=False,
    )
    return home


@pytest.fixture(scope="session")
def api(ui_home: Path) -> Iterator[Server]:
    """The real API on 127.0.0.1."""
    server = Server(ui_home)
    server.start()
    yield server
    server.stop()
