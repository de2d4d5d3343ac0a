from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec.lifecycle.train import train_and_publish
from movierec.service.app import create_app
from movierec.settings import Settings
from tests.helpers import TOKEN

ADMIN = {"Authorization": f"Bearer {TOKEN}"}

FAST = {"als": {"factors": 8, "iterations": 3}, "mf": {"factors": 4, "iterations": 3}}


@pytest.fixture(scope="session")
def trained_home(synth_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MOVIEREC_HOME with one published bundle (trained once per session)."""
    home = tmp_path_factory.mktemp("trained") / "home"
    settings = Settings(home=home)
    train_and_publish(settings, str(synth_release), "ease", params=FAST, evaluate=False)
    return home


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained home (its own feedback database)."""
    dst = tmp_path / "home"
    shutil.copytree(trained_home, dst)
    return dst


@pytest.fixture
def settings_for(home: Path) -> Settings:
    return Settings(home=home, admin_token=TOKEN, warm_cache=True)


@pytest.fixture
def client(settings_for: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for)) as c:
        yield c


@pytest.fixture
def known_user(client: TestClient) -> int:
    return int(client.get("/model", headers=ADMIN).json()["n_users"] and 1)
