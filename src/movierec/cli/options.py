"""Option types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="Layout of the file: csv (ml-latest, ml-20m...), dat "
        "(ml-1m, ml-10m), ml-100k (u.data / u.item).",
    ),
]
