"""The web app (clients/web) in a real browser: Debian's Chromium driven by Playwright (clients/web/e2e/browser.mjs)
against a platform, its edge and the web app's server started here, the app on an origin of its own (so every
call is a cross-origin gRPC-Web call, CORS preflight included). Needs `make web` (the build) and `make chromium`;
`make test` does both. Screenshots land in build/screenshots/."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from app import wiring
from app.demo import photo
from gateway.webapp import WebApp
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support import REPO_ROOT
from tests.support.admin import fraud_detected
from tests.support.events import Producer
from tests.support.market import business
from tests.support.matching import synced, until
from tests.support.pets import TOKYO, cat, create, dog
from tests.support.platform import PASSWORD, Api, embedded_settings, module_of, start_platform
from tests.support.tokens import sign_token
from tests.support.web import CHROMIUM, browser_tools, free_port, run_browser_script

SCRIPT = REPO_ROOT / "clients" / "web" / "e2e" / "browser.mjs"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
OSAKA = {"latitude": 34.6937, "longitude": 135.5023}


@pytest.mark.timeout(420)  # a ceiling for a loaded CI machine: it takes about 45 s
async def test_sign_up_sign_in_search_and_open_a_pet_in_chromium(tmp_path, smtp_sink):
    """Also signs in with the second factor and with the demo provider (the edge's local OpenID provider), and
    refreshes an expired access token. Then two people, each in a browser context of their own: the one who
    signed up swipes on the other's listed dog, the owner accepts, they chat live, and the owner books a walker."""
    browser_tools()  # before a platform starts
    web_port, edge_port = free_port(), free_port()
    # The demo provider's issuer is public_url's: the auth service fetches its keys and tokens from the edge.
    settings = embedded_settings(tmp_path, smtp_sink, web_dir=REPO_ROOT / "clients" / "web" / "dist",
                                 cors_allowed_origins=[f"http://127.0.0.1:{web_port}"], dev_oidc=True,
                                 public_url=f"http://127.0.0.1:{edge_port}")
    web = WebApp(settings, edge_port=edge_port)
    assert web.built(), "the web app is not built: run `make web`"
    platform = await start_platform(settings)
    edge = wiring.edge(platform.rt)
    await edge.start(http_port=edge_port, grpc_port=0)
    await web.start(port=web_port)
    api = Api(platform, smtp_sink)
    try:
        owner = await api.signup("Shelter")
        suffix = uuid.uuid4().hex[:6]
        shown = await create(api, owner, dog(f"Mochi {suffix}", breed="Shiba Inu", location=TOKYO))
        await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=shown.name, content=photo(7)),
                                     metadata=owner.md)
        tama = await create(api, owner, cat(f"Tama {suffix}", location=OSAKA))
        # The listing, as matching's feed sees it: the browser's adopter swipes on it.
        await synced(api, shown, tama)
        walker = await api.signup("Walker")
        await business(api, walker, where=TOKYO, tz="Asia/Tokyo")  # "Happy Paws", walks every day 09:00-17:00
        keys = module_of(api, "auth").keys
        now = dt.datetime.now(dt.timezone.utc)
        expired = sign_token({"sub": owner.user_id, "role": "user", "iat": now - dt.timedelta(hours=1),
                              "exp": now - dt.timedelta(minutes=30)}, keys.private_key, keys.kid)
        careful = await api.signup("Careful", f"mfa-{suffix}@example.com")
        secret, _ = await api.enroll_mfa(careful)
        # A second match of the owner's, with the careful one over the cat: the owner unmatches it in the browser.
        swiped = await api.matching.Swipe(
            matching_pb2.SwipeRequest(pet=tama.name, action=matching_pb2.SWIPE_ACTION_LIKE), metadata=careful.md)
        await api.matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
            name=swiped.interest.name, decision=matching_pb2.RespondToInterestRequest.DECISION_ACCEPT),
            metadata=owner.md)
        # A listing of the owner's held by moderation (the fraud service's hold, as its event makes it): the owner
        # alone sees it, and is told why.
        held = await create(api, owner, dog(f"Rex {suffix}", location=TOKYO))
        fraud = await Producer.open("fraud", platform.rt.bus, tmp_path)
        try:
            await fraud.emit(fraud_detected(held.name, owner.name, 0.93, hold=True))

            async def held_now() -> bool:
                got = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=held.name), metadata=owner.md)).pet
                return got.moderation == pet_pb2.Pet.MODERATION_HELD
            await until(held_now, what="the owner's listing held")
        finally:
            await fraud.close()
        (tmp_path / "kuro.jpg").write_bytes(photo(11))
        for old in SCREENSHOTS.glob("*.png"):  # its own: the admin panel's test keeps its own in admin/
            old.unlink()
        env = {"WEB_URL": f"http://127.0.0.1:{web.port}", "SCREENSHOTS": str(SCREENSHOTS),
               "EMAIL": f"browser-{suffix}@example.com", "PASSWORD": PASSWORD, "DOG": f"Mochi {suffix}",
               "CAT": f"Tama {suffix}", "OWNER_EMAIL": owner.email, "MFA_EMAIL": careful.email, "MFA_SECRET": secret,
               "DEMO_EMAIL": f"demo-{suffix}@example.com", "CHROMIUM": CHROMIUM,
               "WALKER_EMAIL": walker.email, "HELD_PET": f"Rex {suffix}", "NEW_PET": f"Kuro {suffix}",
               "PHOTO": str(tmp_path / "kuro.jpg"),
               "EXPIRED_SESSION": json.dumps({"accessToken": expired, "refreshToken": owner.refresh_token,
                                              "email": owner.email, "expiresAt": 0})}
        await run_browser_script(SCRIPT, env, timeout=360, screenshots=SCREENSHOTS)
        for name in ("signup-errors", "signin-error", "pets", "pet", "pets-phone", "mfa-error", "feed", "matches",
                     "chats", "chat", "notifications", "business", "bookings", "sessions", "my-pets", "pet-form",
                     "pet-held", "incoming", "review", "3ds", "bank", "cancel", "mfa-enrol", "chat-attachment",
                     "unmatch", "blocked"):
            assert (SCREENSHOTS / f"{name}.png").stat().st_size > 0
    finally:
        await api.channel.close()
        await web.stop()
        await edge.stop(grace=1)
        await platform.stop(grace=1)
