from __future__ import annotations

from pathlib import Path

import pytest

from movierec.data.movielens import detect_layout, load_release, resolve_dataset
from movierec.errors import DatasetUnavailableError
from movierec.settings import Settings
from tests.conftest import write


def test_real_ml_latest_small_exact_counts(data_dir: Path) -> None:
    rel = load_release(data_dir / "ml-latest-small")
    assert rel.layout.name == "csv"
    t = {k: v.table for k, v in rel.tables.items()}
    assert t["ratings"].num_rows == 100_836
    assert t["movies"].num_rows == 9_742
    assert t["links"].num_rows == 9_742
    assert t["tags"].num_rows == 3_683
    assert len(set(t["ratings"]["user_id"].to_pylist())) == 610
    assert len(set(t["ratings"]["movie_id"].to_pylist())) == 9_724
    assert all(v.report.reject_rows == 0 for v in rel.tables.values())
    assert t["links"]["imdb_id"][0].as_py() == "0114709"
    assert t["links"]["tmdb_id"].null_count == 8
    ts = t["ratings"]["timestamp"].to_numpy()
    assert (ts.min(), ts.max()) == (828124615, 1537799250)
    toy = t["movies"].to_pylist()[0]
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


def _dat_release(root: Path, with_tags: bool) -> Path:
    write(
        root / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    write(
        root / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach "
        "(1996)::Animation|Children's|Musical\n2::Amélie (2001)::Comedy|Romance\n",
        encoding="latin-1",
    )
    write(root / "users.dat", "1::F::1::10::48067\n")
    if with_tags:
        write(root / "tags.dat", "15::4973::excellent!::1215184630\n")
    return root


def test_dat_layout_ml_1m(tmp_path: Path) -> None:
    rel = load_release(_dat_release(tmp_path / "ml-1m", with_tags=False))
    assert rel.layout.name == "dat"
    ratings = rel.tables["ratings"].table
    assert ratings.num_rows == 3 and ratings["rating"].to_pylist() == [5.0, 3.0, 4.0]
    movies = {m["movie_id"]: m for m in rel.tables["movies"].table.to_pylist()}
    assert movies[661]["genres"] == ["Animation", "Children's", "Musical"]
    assert movies[2]["title"] == "Amélie (2001)"  # latin-1 decoded
    assert "tags" not in rel.tables


def test_dat_layout_ml_10m_in_subfolder_with_tags(tmp_path: Path) -> None:
    _dat_release(tmp_path / "ml-10m" / "ml-10M100K", with_tags=True)
    rel = load_release(tmp_path / "ml-10m")
    assert rel.layout.root.name == "ml-10M100K"
    assert rel.tables["tags"].table.to_pylist() == [
        {"user_id": 15, "movie_id": 4973, "tag": "excellent!", "timestamp": 1215184630}
    ]


def test_ml_100k_layout(tmp_path: Path) -> None:
    root = tmp_path / "ml-100k"
    write(
        root / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
    )
    flags_toy = "|".join(["0", "0", "0", "1", "1", "1"] + ["0"] * 13)
    flags_none = "|".join(["1"] + ["0"] * 18)
    write(
        root / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{flags_toy}\n"
        f"267|unknown||||{flags_none}\n",
        encoding="latin-1",
    )
    rel = load_release(root)
    assert rel.layout.name == "ml-100k"
    assert rel.tables["ratings"].table.num_rows == 3
    movies = rel.tables["movies"].table.to_pylist()
    assert movies[0]["genres"] == ["Animation", "Children's", "Comedy"]
    assert movies[0]["year"] == 1995
    assert movies[1]["genres"] == []


def test_unknown_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="holds no MovieLens release"):
        detect_layout(tmp_path)


def test_resolve_prefers_data_dir_then_cache(tmp_path: Path, settings: Settings) -> None:
    _dat_release(tmp_path / "releases" / "ml-1m", with_tags=False)
    assert (
        resolve_dataset("ml-1m", settings, tmp_path / "releases") == tmp_path / "releases" / "ml-1m"
    )
    cached = _dat_release(settings.datasets_dir / "ml-100k", with_tags=False)
    assert resolve_dataset("ml-100k", settings, tmp_path / "releases") == cached


def test_offline_without_copy_says_which_variable(settings: Settings, tmp_path: Path) -> None:
    off = settings.model_copy(update={"offline": True, "data_dir": tmp_path})
    with pytest.raises(DatasetUnavailableError) as e:
        resolve_dataset("ml-25m", off)
    assert "MOVIEREC_DATA_DIR" in str(e.value) and "MOVIEREC_MIRROR" in str(e.value)


def test_unknown_dataset_name(settings: Settings) -> None:
    with pytest.raises(DatasetUnavailableError, match="unknown dataset"):
        resolve_dataset("ml-999", settings)
