"""Option types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DatasetOpt = Annotated[
    str, typer.Option(help="Release name (ml-latest-small, ...), folder, or `store`.")
]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Folder of releases (default MOVIEREC_DATA_DIR).")
]
OutputOpt = Annotated[Path | None, typer.Option(help="Write the results JSON here.")]
PlotOpt = Annotated[Path | None, typer.Option(help="Write a PNG chart here.")]
ParamsOpt = Annotated[
    str | None, typer.Option(help='Config overrides as JSON: {"als": {"factors": 128}}.')
]
EngineOpt = Annotated[
    str,
    typer.Option(
        help="ALS training engine: implicit (this machine) or spark (Spark MLlib on "
        "MOVIEREC_SPARK_MASTER, local[*] by default); the bundle is the same either way."
    ),
]


def params_with_engine(params: str | None, engine: str) -> dict[str, dict[str, Any]]:
    """The ``--params`` JSON with ALS's engine set by ``--engine`` (unless params set it)."""
    import json

    if engine not in ("implicit", "spark"):
        raise typer.BadParameter(f"unknown engine {engine!r}: implicit or spark")
    out: dict[str, dict[str, Any]] = json.loads(params) if params else {}
    if engine != "implicit":
        out.setdefault("als", {}).setdefault("engine", engine)
    return out


FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="Layout of the file: csv (ml-latest, ml-20m...), dat "
        "(ml-1m, ml-10m), ml-100k (u.data / u.item).",
    ),
]
