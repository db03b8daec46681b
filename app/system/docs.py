"""The interactive API documentation, Swagger UI at /docs and ReDoc at /redoc, with their
scripts, styles and icon served by this server from the `fastapi-offline` package (under
ASSETS_URL): the pages work without reaching any other host.

Without that package installed the pages load the same assets from FastAPI's default CDN (a
warning says so at start), as FastAPI's own pages do."""

import importlib.resources
import importlib.util
import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

logger = logging.getLogger(__name__)

ASSETS_URL = "/docs-assets"
ASSETS_PACKAGE = "fastapi_offline"
# Swagger UI would ask validator.swagger.io about the document: not offline, not wanted.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def _assets_directory() -> Path | None:
    if importlib.util.find_spec(ASSETS_PACKAGE) is None:
        return None
    return Path(str(importlib.resources.files(ASSETS_PACKAGE) / "static"))


# Found once, at import: no file system look-up on the event loop.
ASSETS_DIRECTORY = _assets_directory()

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _openapi_url(request: Request) -> str:
    return _root(request) + str(request.app.openapi_url)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this server's OpenAPI document."""
    title = f"{request.app.title} - Swagger UI"
    if ASSETS_DIRECTORY is None:
        return get_swagger_ui_html(openapi_url=_openapi_url(request), title=title)
    assets = _root(request) + ASSETS_URL
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=title,
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for this server's OpenAPI document."""
    title = f"{request.app.title} - ReDoc"
    if ASSETS_DIRECTORY is None:
        return get_redoc_html(openapi_url=_openapi_url(request), title=title)
    assets = _root(request) + ASSETS_URL
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=title,
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """The documentation pages and their assets; the app is made with docs_url=None and
    redoc_url=None."""
    app.include_router(router)
    if ASSETS_DIRECTORY is None:
        logger.warning(
            "%s is not installed: /docs and /redoc load their scripts from a CDN",
            ASSETS_PACKAGE.replace("_", "-"),
        )
        return
    # check_dir=False: the directory ships with the package; checking it is file IO.
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIRECTORY, check_dir=False), name="docs")
