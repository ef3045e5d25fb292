"""Serve a folder over HTTP on a loopback port of its own: a site on another origin than the service."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SITES = Path(__file__).resolve().parent / "sites"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextmanager
def static_site(folder: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``folder`` at ``http://<host>:<free port>`` until the block ends; yields that origin."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"static-site-{folder.name}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class StubPages:
    """A site that answers every GET with a small page: a relying party's landing pages in browser tests."""

    url: str
    hits: list[str] = field(default_factory=list)


@contextmanager
def stub_pages(title: str = "Relying party", host: str = "127.0.0.1") -> Iterator[StubPages]:
    """Serve a page titled ``title`` for every path at ``http://<host>:<free port>``, remembering the paths."""
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1>".encode()
    hits: list[str] = []

    class _Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer((host, 0), _Page)
    thread = threading.Thread(target=server.serve_forever, name=f"stub-pages-{title}", daemon=True)
    thread.start()
    try:
        yield StubPages(f"http://{host}:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
