"""Memory needs known before fitting: refusals at ML-32M shape, and estimates bound real fits."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import pytest

from movierec.data.interactions import InteractionData
from movierec.data.synthetic import SynthConfig, generate
from movierec.data.tables import load_tables
from movierec.evaluation.report import measure
from movierec.models import TrainOptions
from movierec.models.memory import (
    GB,
    DataShape,
    InsufficientMemoryError,
    check_fits,
    largest_square,
    parse_memory,
)
from movierec.settings import Settings
from movierec.strategies import create

DEFAULT = ("popularity", "itemknn", "als", "ease", "mf", "ranked")
#: ML-32M's catalogue with 20M ratings (what `movierec data synth --ratings 20000000` makes).
ML32M_SHAPED = DataShape(n_users=125_000, n_items=87_585, nnz=20_000_000)


def test_default_strategies_at_ml32m_shape_fit_this_machine_or_are_refused_with_the_fix() -> None:
    defaults = [create(n, None) for n in DEFAULT]
    assert check_fits(defaults, ML32M_SHAPED, available=20 * GB) < 20 * GB  # 24 GB here
    with pytest.raises(InsufficientMemoryError) as e:
        check_fits(defaults, ML32M_SHAPED, available=10 * GB)
    text = str(e.value)
    assert "nothing was fitted" in text and "10.0 GB is available" in text
    assert "ranked:" in text and '"max_train_queries"' in text
    # the fix it names is a real fix: with it (and a smaller sequential window) the run fits
    fixed = [
        create(n, p)
        for n, p in {
            "popularity": None,
            "itemknn": None,
            "als": None,
            "ease": None,
            "mf": None,
            "ranked": {"max_train_queries": 5000, "source_params": {"sequential": {"window": 3}}},
        }.items()
    ]
    assert check_fits(fixed, ML32M_SHAPED, available=10 * GB) < 10 * GB


def test_ease_names_the_item_budget_that_fits() -> None:
    with pytest.raises(InsufficientMemoryError) as e:
        check_fits([create("ease", None)], ML32M_SHAPED, available=4 * GB)
    text = str(e.value)
    assert "ease:" in text and "30,000²" in text and "does not fit on its own" in text
    budget = int(text.split('"max_items": ')[1].split("}")[0])
    assert 10_000 < budget < 30_000
    ease = create("ease", {"max_items": budget})
    assert check_fits([ease], ML32M_SHAPED, available=4 * GB) <= 4 * GB


def test_units_and_square_budget() -> None:
    assert parse_memory("4g") == 4 * GB and parse_memory("512m") == 512 * 1024**2
    assert largest_square(5 * 4 * 100**2, 5) == 100


def _released() -> None:
    """Return freed memory to the system so a fit's growth starts from what is really held."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.mark.slow
def test_estimates_bound_real_fits_on_a_reduced_ml32m_shaped_set(tmp_path: Path) -> None:
    """The 20M path at 1/200 size: same generator, same defaults, every strategy."""
    generate(tmp_path / "synth", SynthConfig(ratings=100_000, seed=7))
    tables = load_tables(str(tmp_path / "synth"), Settings(home=tmp_path / "home"))
    data = InteractionData.from_table(tables.ratings).with_catalog(tables.movies, tables.tags)
    shape = DataShape(data.n_users, data.n_items, data.nnz)
    fast = {"ranked": {"n_estimators": 30, "label_items": 4}}
    measured = {}
    for name in DEFAULT:
        model = create(name, fast.get(name))
        need = model.memory_need(shape, 20 * GB)
        _released()
        with measure(0.002) as cost:
            model.fit(data, TrainOptions(seed=0))
        measured[name] = (cost.peak_rss - cost.rss_before, need.peak)
        del model
    over = {n: (g, p) for n, (g, p) in measured.items() if g > p + 32 * 1024**2}
    assert not over, f"fits above their estimate (grown, estimate): {over}"
