"""Bundle format 2: one shared history, ``ranked``'s sources stored once, old formats refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from movierec.lifecycle.bundle import BUNDLE_FORMAT, BundleError, load_bundle
from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings

RANKED = {
    "sources": ["popularity", "itemknn", "ease", "sequential"],
    "per_source": 30,
    "n_estimators": 20,
    "label_items": 4,
}


@pytest.fixture(scope="module")
def bundle_home(synth_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fmt") / "home"
    train_and_publish(
        Settings(home=home),
        str(synth_release),
        "ranked",
        strategies=("popularity", "itemknn", "ease", "ranked"),
        params={"ranked": RANKED},
        evaluate=False,
    )
    return home


def test_history_is_stored_once_and_sources_by_name(bundle_home: Path) -> None:
    b = load_bundle(bundle_home / "bundles")
    assert b.manifest["format"] == BUNDLE_FORMAT == 2
    files = set(b.manifest["files"])
    assert "history.npz" in files
    for name in b.models:
        with np.load(b.path / "models" / name / "arrays.npz") as z:
            assert not any(k.startswith("history_") for k in z.files), name
    # ranked's sources equal to the bundle's own models are references, the others are stored
    assert {"models/ranked/sources/itemknn.ref", "models/ranked/sources/ease.ref"} <= files
    assert not any(f.startswith("models/ranked/sources/ease/") for f in files)
    assert any(f.startswith("models/ranked/sources/sequential/") for f in files)
    ranked = b.models["ranked"]
    assert ranked.sources["ease"] is b.models["ease"]  # type: ignore[attr-defined]
    assert ranked.sources["itemknn"] is b.models["itemknn"]  # type: ignore[attr-defined]
    # one history object for every model, ranked's own sources included
    histories = {id(m.history) for m in b.models.values()}
    histories |= {id(s.history) for s in ranked.sources.values()}  # type: ignore[attr-defined]
    assert len(histories) == 1


def test_a_loaded_bundle_gives_the_answers_of_the_trained_models(
    synth_release: Path, tmp_path: Path
) -> None:
    from movierec.data.tables import load_tables
    from movierec.lifecycle.bundle import publish_bundle
    from movierec.models.base import TrainOptions
    from movierec.strategies import create

    settings = Settings(home=tmp_path / "home")
    tables = load_tables(str(synth_release), settings)
    from movierec.data.interactions import InteractionData

    data = InteractionData.from_table(tables.ratings).with_catalog(tables.movies, tables.tags)
    opts = TrainOptions(seed=3, threads=1)
    models = {
        n: create(n, RANKED if n == "ranked" else None).fit(data, opts)
        for n in ("popularity", "itemknn", "ease", "ranked")
    }
    version = publish_bundle(
        settings.bundles_dir, models, data.users, data.items, tables.movies,  # type: ignore[arg-type]
        default_strategy="ranked", fingerprint=data.fingerprint.to_dict(),
    )  # fmt: skip
    loaded = load_bundle(settings.bundles_dir, version)
    users = np.arange(20)
    for name, model in models.items():
        a, b = model.recommend(users, 10), loaded.models[name].recommend(users, 10)
        assert np.array_equal(a.items, b.items), name
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_an_old_format_bundle_is_refused_with_a_clear_message(
    bundle_home: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "bundles"
    shutil.copytree(bundle_home / "bundles", root)
    version = (root / "CURRENT").read_text().strip()
    manifest = json.loads((root / version / "manifest.json").read_text())
    manifest["format"] = 1
    (root / version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"older movierec.*movierec train"):
        load_bundle(root)


def test_the_bundle_is_smaller_than_one_copy_per_model(bundle_home: Path) -> None:
    b = load_bundle(bundle_home / "bundles")
    total = sum((b.path / f).stat().st_size for f in b.manifest["files"])
    ease = (b.path / "models" / "ease" / "arrays.npz").stat().st_size
    # the ease weights are the largest part and are stored once, not twice
    assert total < 1.5 * ease + 20 * 2**20


def test_the_popularity_fallback_follows_the_settings(synth_release: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", popular_by="mean", popular_min_ratings=7)
    train_and_publish(
        settings, str(synth_release), "popularity", strategies=("popularity",), evaluate=False
    )
    b = load_bundle(settings.bundles_dir)
    config = b.manifest["strategies"]["popularity"]["config"]
    assert config["mode"] == "mean" and config["min_count"] == 7
    counts = np.diff(b.models["popularity"].history.tocsc().indptr)
    top = np.argsort(-b.models["popularity"].popularity)[:10]  # type: ignore[attr-defined]
    assert (counts[top] >= 7).all()
