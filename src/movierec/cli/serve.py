"""``movierec serve`` (the API) and ``movierec ui`` (the web app)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from movierec.settings import get_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="JSON access log lines on stderr.")] = True,
) -> None:
    """Serve the current bundle over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    if access_log:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("movierec.access")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    if 2 * workers > (os.cpu_count() or 1):  # no idle core for a lone request to borrow
        os.environ.setdefault("MOVIEREC_SPARE_CORE", "false")
    uvicorn.run(
        "movierec.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


def ui(
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    api_url: Annotated[
        str | None, typer.Option(help="API base URL (default MOVIEREC_API_URL or :8000).")
    ] = None,
) -> None:
    """Start the Streamlit app (it talks to the API over HTTP only)."""
    import subprocess

    app_file = Path(__file__).parents[1] / "ui" / "app.py"
    env = dict(os.environ)
    if api_url:
        env["MOVIEREC_API_URL"] = api_url
    env.setdefault("MOVIEREC_HOME", str(get_settings().home))
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_file),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    raise typer.Exit(subprocess.call(cmd, env=env))
