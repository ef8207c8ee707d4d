"""The browser chat: `GET /` serves one static page that talks to this server's own API.

Design choices:
- The page, its script and its stylesheet ship inside the package (`tinyseek/serve/static/`, package
  data), with no build step and nothing fetched from a CDN: `pip install tinyseek` and
  `tinyseek serve` are all a user needs, offline too.
- The page is a client of the public API only (`/v1/models`, streamed `/v1/chat/completions`), so
  it exercises the same path as any other client and needs no route of its own beyond the files.
- The files are outside `/v1/`, so they load without the API key; the page asks for the key when
  the API answers 401 and sends it like any client. Only the three known names are served (no path
  from the URL reaches the file system).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

ASSETS = {"chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8"}
_NO_CACHE = {"Cache-Control": "no-cache"}  # a server upgrade must not leave an old page in the browser


def _read(name: str) -> bytes:
    return resources.files("tinyseek.serve").joinpath("static", name).read_bytes()


@router.get("/")
async def chat_page() -> Response:
    return HTMLResponse(_read("index.html"), headers=_NO_CACHE)


@router.get("/chat/{name}")
async def chat_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        return Response(
            f"no chat asset {name!r}; expected one of {sorted(ASSETS)}", 404, media_type="text/plain"
        )
    return Response(_read(name), media_type=media_type, headers=_NO_CACHE)
