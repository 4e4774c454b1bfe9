"""The web app on PETPLATFORM_WEB_PORT: the static build of clients/web (`make web`), index.html for the app's
own paths (it routes in the browser), and /config.json saying where the edge is. The admin panel's build
(clients/admin) is served the same way under /admin/, when built. The app calls the edge
over gRPC-Web from its own origin, so the edge's CORS list must name this one (it does for port 3100)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web

from gateway.connections import EdgeRunner
from gateway.edge import bound_port
from mesh import oauth
from mesh.config import Settings

log = logging.getLogger(__name__)

# Photos may come from the edge or, in the real profile, from the object store's presigned URLs; blob: for
# what the app fetched over gRPC-Web itself (chat attachments, the two-factor QR code).
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
        "connect-src 'self' {edge}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def sign_in_providers(settings: Settings) -> list[dict[str, str]]:
    """The providers the app offers, for its side of the authorization-code flow (PKCE, state, nonce; the
    auth service exchanges the code). Not those that answer with a POST (Apple's form_post): a static app
    cannot receive one."""
    return [{"id": name, "authorizationEndpoint": p.endpoints.authorization_endpoint,
             "clientId": p.config.client_ids["web"], "scope": p.endpoints.scope}
            for name, p in oauth.providers(settings).items()
            if "web" in p.config.client_ids and not p.endpoints.form_post]


class WebApp:
    def __init__(self, settings: Settings, edge_port: int):
        self.s = settings
        self.edge_port = edge_port  # the edge this process serves; web_edge_url overrides it
        self.root = settings.web_dir.resolve()
        self.admin_root = settings.admin_dir.resolve()
        self.providers = sign_in_providers(settings)
        self.port = 0

    def built(self) -> bool:
        return (self.root / "index.html").is_file()

    def edge_url(self, request: web.Request) -> str:
        """The edge as the browser reaches it: the configured URL, else the page's host at the edge's port,
        so a page opened as localhost calls localhost (the edge's CORS list names both spellings)."""
        if self.s.web_edge_url:
            return self.s.web_edge_url.rstrip("/")
        return f"{request.scheme}://{request.url.raw_host}:{self.edge_port}"

    def admin_built(self) -> bool:
        return (self.admin_root / "index.html").is_file()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/config.json", self.config)
        if self.admin_built():
            app.router.add_get("/admin", self.admin_home)
            app.router.add_get("/admin/{path:.*}", self.admin_file)
        else:
            log.warning("admin panel not served: %s has no index.html (run `make web`)", self.s.admin_dir)
        app.router.add_get("/{path:.*}", self.file)
        return app

    async def config(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"edgeUrl": self.edge_url(request), "providers": self.providers}),
                            content_type="application/json",
                            headers={**_HEADERS, "Cache-Control": "no-store"})

    async def file(self, request: web.Request) -> web.StreamResponse:
        return self.serve(request, self.root, request.match_info["path"])

    async def admin_file(self, request: web.Request) -> web.StreamResponse:
        return self.serve(request, self.admin_root, request.match_info["path"])

    async def admin_home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/admin/", headers=_HEADERS)  # the build's relative paths need the slash

    def serve(self, request: web.Request, root: Path, relative: str) -> web.StreamResponse:
        path = (root / relative).resolve()
        headers = {**_HEADERS, "Content-Security-Policy": _CSP.format(edge=self.edge_url(request))}
        if relative and path.is_relative_to(root) and path.is_file():
            # Vite names assets by their content hash: they never change under the same name.
            cache = "public, max-age=31536000, immutable" if relative.startswith("assets/") else "no-cache"
            return web.FileResponse(path, headers={**headers, "Cache-Control": cache})
        if relative.startswith("assets/") or "." in relative.rsplit("/", 1)[-1]:
            raise web.HTTPNotFound(headers=_HEADERS)  # a missing file, not a page of the app
        return web.FileResponse(root / "index.html", headers={**headers, "Cache-Control": "no-cache"})

    async def start(self, port: int | None = None) -> None:
        self.runner = EdgeRunner(self.app(), access_log=None, shutdown_timeout=2,
                                 header_timeout=self.s.http_header_timeout_seconds,
                                 keepalive_timeout=self.s.http_idle_timeout_seconds)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.s.host, self.s.web_port if port is None else port,
                           reuse_port=self.s.reuse_port)
        await site.start()
        self.port = bound_port(site)
        log.info("web app on http://%s:%d", self.s.host, self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()


def web_app(settings: Settings, edge_port: int) -> WebApp | None:
    """The web app's server, or None (with a warning) when clients/web has not been built."""
    app = WebApp(settings, edge_port)
    if not app.built():
        log.warning("web app not served: %s has no index.html (run `make web`)", Path(settings.web_dir))
        return None
    return app
