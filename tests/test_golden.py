"""Golden answers: every strategy gives the same lists as the code before the house refactoring.

``tests/golden/answers.json`` was written by ``tests/golden/make_golden.py`` run against the
commit before issue #11 (9fddf11); the same script runs here against the current code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.golden.make_golden import answers, synth

GOLDEN = Path(__file__).parent / "golden" / "answers.json"


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[object]]]:
    return answers(synth(tmp_path_factory.mktemp("golden")))


@pytest.mark.parametrize("strategy", list(json.loads(GOLDEN.read_text())))
def test_same_answers_as_before(strategy: str, current: dict[str, dict[str, list[object]]]) -> None:
    expected = json.loads(GOLDEN.read_text())[strategy]
    got = current[strategy]
    assert got["items"] == expected["items"]
    np.testing.assert_allclose(np.asarray(got["scores"]), np.asarray(expected["scores"]), atol=2e-5)
    assert got["fold_in_items"] == expected["fold_in_items"]
    assert got.get("similar") == expected.get("similar")
