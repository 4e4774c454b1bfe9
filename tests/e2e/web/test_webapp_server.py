"""The web app's own server (gateway/webapp.py) over real HTTP, on a stand-in build: files, the app's paths
answered with index.html, nothing outside the build, and /config.json saying where the edge is."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp

from gateway.webapp import WebApp, web_app
from mesh.config import load_settings
from tests.e2e.platform.test_reflection_and_targets import free_port


def built(tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>app</title>")
    (dist / "assets" / "index-abc123.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("not for the web")
    return dist


async def test_files_app_paths_and_config(tmp_path):
    settings = load_settings(data_dir=tmp_path, web_dir=built(tmp_path), dev_oidc=True)
    web = WebApp(settings, edge_port=3999)
    await web.start(port=0)
    base = f"http://127.0.0.1:{web.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/assets/index-abc123.js") as r:
                assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
            for path in ("/", "/pets/abc", "/signin/callback?code=x&state=y"):
                async with http.get(base + path) as r:
                    assert r.status == 200 and "<title>app</title>" in await r.text()
                    assert r.headers["Cache-Control"] == "no-cache"
                    assert "connect-src 'self' http://127.0.0.1:3999" in r.headers["Content-Security-Policy"]
                    # Images the app fetched over gRPC-Web (chat attachments, the QR code) are shown as blob: URLs.
                    assert "blob:" in r.headers["Content-Security-Policy"].split("img-src")[1].split(";")[0]
            for path in ("/assets/missing.js", "/favicon.ico"):
                async with http.get(base + path) as r:
                    assert r.status == 404
            for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
                async with http.get(base + path, allow_redirects=False) as r:
                    assert "not for the web" not in await r.text()
            # The edge as the browser reaches it: the page's own host, so localhost stays localhost.
            async with http.get(base + "/config.json", headers={"Host": f"localhost:{web.port}"}) as r:
                config = await r.json()
            assert config["edgeUrl"] == "http://localhost:3999"
            assert [p["id"] for p in config["providers"]] == ["demo"]
            assert config["providers"][0]["authorizationEndpoint"].endswith("/dev-oidc/authorize")
    finally:
        await web.stop()


async def test_a_configured_edge_url_wins_and_no_build_serves_nothing(tmp_path):
    settings = load_settings(data_dir=tmp_path, web_dir=built(tmp_path), web_edge_url="https://api.example.com/")
    web = WebApp(settings, edge_port=3000)
    await web.start(port=0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{web.port}/config.json") as r:
                assert (await r.json()) == {"edgeUrl": "https://api.example.com", "providers": []}
    finally:
        await web.stop()
    assert web_app(load_settings(data_dir=tmp_path, web_dir=tmp_path / "nothing"), 3000) is None


async def test_the_web_target_serves_the_app_alone(tmp_path):
    """`run --target=web`: the web app's own process (its Deployment in the chart), no gRPC, no edge."""
    port = free_port()
    env = {**os.environ, "PETPLATFORM_DATA_DIR": str(tmp_path), "PETPLATFORM_WEB_DIR": str(built(tmp_path)),
           "PETPLATFORM_WEB_PORT": str(port), "PETPLATFORM_WEB_EDGE_URL": "https://api.example.com"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--target=web"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        config = None
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/config.json") as r:
                        config = await r.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert config == {"edgeUrl": "https://api.example.com", "providers": []}
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "SIGTERM is a clean shutdown"
    # Nothing built: it says so and exits, rather than serving 404s.
    env["PETPLATFORM_WEB_DIR"] = str(tmp_path / "nothing")
    failed = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "app.cli", "run", "--target=web"],
                                     env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and "no web app to serve" in failed.stderr


async def test_the_admin_panel_under_admin(tmp_path):
    """Its own build under /admin/ (its paths answered with its own index.html), next to the web app's."""
    admin = tmp_path / "admin-dist"
    (admin / "assets").mkdir(parents=True)
    (admin / "index.html").write_text("<!doctype html><title>panel</title>")
    (admin / "assets" / "index-def456.js").write_text("console.log('panel')")
    settings = load_settings(data_dir=tmp_path, web_dir=built(tmp_path), admin_dir=admin)
    web = WebApp(settings, edge_port=3999)
    await web.start(port=0)
    base = f"http://127.0.0.1:{web.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/admin", allow_redirects=False) as r:
                assert r.status == 308 and r.headers["Location"] == "/admin/"
            for path in ("/admin/", "/admin/cases/abc", "/admin/users?q=sam"):
                async with http.get(base + path) as r:
                    assert r.status == 200 and "<title>panel</title>" in await r.text()
                    assert "connect-src 'self' http://127.0.0.1:3999" in r.headers["Content-Security-Policy"]
            async with http.get(base + "/admin/assets/index-def456.js") as r:
                assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
            async with http.get(base + "/admin/assets/index-abc123.js") as r:
                assert r.status == 404  # the web app's asset is not the panel's
            for path in ("/admin/../secret.txt", "/admin/%2e%2e/%2e%2e/secret.txt"):
                async with http.get(base + path, allow_redirects=False) as r:
                    assert "not for the web" not in await r.text()
            async with http.get(base + "/pets/abc") as r:
                assert "<title>app</title>" in await r.text()
    finally:
        await web.stop()
    # Not built: /admin/ is only another path of the web app.
    unbuilt = WebApp(load_settings(data_dir=tmp_path, web_dir=tmp_path / "dist", admin_dir=tmp_path / "none"), 3999)
    assert not unbuilt.admin_built()
