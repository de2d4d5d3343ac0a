from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.data.feedback import FeedbackStore
from movierec.streams.broker import Broker, create_topic
from tests.service.conftest import home, trained_home  # noqa: F401 - fixtures reused here

_names = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Tansu broker on 127.0.0.1 for the whole session."""
    with Broker(log_file=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


@pytest.fixture
def topic(broker: Broker) -> str:
    """A fresh two-partition topic."""
    name = f"events-{next(_names)}"
    create_topic(broker.bootstrap, name, partitions=2)
    return name


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    s = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", overlay=False)
    yield s
    s.close()
