"""The admin panel (clients/admin) in a real browser: Debian's Chromium driven by Playwright
(clients/admin/e2e/admin.mjs) against a platform, its edge and the web server started here, the panel under
/admin/ of its own origin (every call a cross-origin gRPC-Web call). A person reports a listing that the fraud
service also scored, in the web app on the same server (the pet page's Report dialog); the moderator signs in
with password and TOTP, opens the case from the queue, reads the report and the factors, and hides the listing
with a reason, which the public then no longer sees. A support member is offered no moderator action; an admin
verifies the audit log. Needs `make web` and `make chromium`; `make test` does both. Screenshots land in
build/screenshots/admin/."""
from __future__ import annotations

import shutil
import uuid

import grpc
import pytest

from app import wiring
from gateway.webapp import WebApp
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.pet.v1 import pet_pb2
from tests.support import REPO_ROOT
from tests.support.admin import fraud_detected, grant_role, open_case_of, subject_known
from tests.support.events import Producer
from tests.support.matching import until
from tests.support.pets import TOKYO, create, dog
from tests.support.platform import PASSWORD, Api, embedded_settings, start_platform
from tests.support.web import CHROMIUM, browser_tools, free_port, run_browser_script

SCRIPT = REPO_ROOT / "clients" / "admin" / "e2e" / "admin.mjs"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots" / "admin"
BOSS = "boss@admin-browser.example.com"  # grants the staff roles here, so the browser's admin has a fresh code step
ADMIN = "ada@admin-browser.example.com"
FACTOR = "price 90% below the typical price for a dog"


async def publicly_visible(api: Api, pet: str) -> bool:
    try:
        await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet))  # nobody signed in
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


@pytest.mark.timeout(240)  # a ceiling for a loaded CI machine
async def test_a_moderator_handles_a_reported_listing_in_chromium(tmp_path, smtp_sink):
    browser_tools()  # before a platform starts
    web_port, edge_port = free_port(), free_port()
    settings = embedded_settings(tmp_path, smtp_sink, web_dir=REPO_ROOT / "clients" / "web" / "dist",
                                 admin_dir=REPO_ROOT / "clients" / "admin" / "dist", admin_emails=[BOSS, ADMIN],
                                 cors_allowed_origins=[f"http://127.0.0.1:{web_port}"])
    web = WebApp(settings, edge_port=edge_port)
    assert web.admin_built(), "the admin panel is not built: run `make web`"
    platform = await start_platform(settings)
    edge = wiring.edge(platform.rt)
    await edge.start(http_port=edge_port, grpc_port=0)
    await web.start(port=web_port)
    api = Api(platform, smtp_sink)
    fraud = await Producer.open("fraud", platform.rt.bus, tmp_path)
    try:
        suffix = uuid.uuid4().hex[:6]
        api.admin_session = await api.signup_admin(BOSS, "Boss Operator")
        # Each staff member's second factor is enrolled with the current code: the browser types the next one.
        moderator = await grant_role(api, await api.signup("Quinn Reviewer"), "moderator")
        moderator_secret, _ = await api.enroll_mfa(moderator)
        support = await grant_role(api, await api.signup("Sam Helper"), "support")
        support_secret, _ = await api.enroll_mfa(support)
        admin_secret, _ = await api.enroll_mfa(await api.signup("Ada Admin", ADMIN))

        owner_name = f"Owner {suffix}"
        owner = await api.signup(owner_name)
        pet_name = f"Rex {suffix}"
        pet = await create(api, owner, dog(pet_name, location=TOKYO))
        reporter = await api.signup("Careful Adopter")
        # The fraud service's score on the same listing (below the hold: the moderator's decision hides it).
        await fraud.emit(fraud_detected(pet.name, owner.name, 0.82))

        async def case_with_evidence():
            case = await open_case_of(api, pet.name)
            if case is None:
                return None
            full = (await api.admin.GetCase(a.GetCaseRequest(name=case.name), metadata=api.admin_session.md)).case
            return full if full.evidence else None
        case = await until(case_with_evidence, what="the case with its fraud score")
        assert not case.reports  # the report is the browser's
        # A report on a listing the admin service has not learnt of yet is NOT_FOUND: the person reports once it has.
        await until(lambda: subject_known(api, pet.name), what=f"the admin service knowing {pet.name}")
        assert await publicly_visible(api, pet.name)

        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
        env = {"ADMIN_URL": f"http://127.0.0.1:{web.port}/admin/", "SCREENSHOTS": str(SCREENSHOTS),
               "WEB_URL": f"http://127.0.0.1:{web.port}", "REPORTER_EMAIL": reporter.email,
               "PASSWORD": PASSWORD, "CHROMIUM": CHROMIUM, "PET": pet.name, "PET_NAME": pet_name,
               "OWNER_NAME": owner_name, "FACTOR": FACTOR,
               "MODERATOR_EMAIL": moderator.email, "MODERATOR_SECRET": moderator_secret,
               "SUPPORT_EMAIL": support.email, "SUPPORT_SECRET": support_secret,
               "ADMIN_EMAIL": ADMIN, "ADMIN_SECRET": admin_secret}
        await run_browser_script(SCRIPT, env, timeout=180, screenshots=SCREENSHOTS)

        # The person's report, filed in the web app, is the case's.
        got = await api.admin.GetCase(a.GetCaseRequest(name=case.name), metadata=api.admin_session.md)
        reports = got.case.reports
        assert [(r.reason, r.details, r.reporter) for r in reports] == [
            (a.REPORT_REASON_SCAM, "asks to pay by gift card before meeting", reporter.name)]

        # The decision reached the pet service: hidden (not held) for its owner, gone for everyone else.
        async def hidden():
            seen = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name), metadata=owner.md)).pet
            return seen.moderation == pet_pb2.Pet.MODERATION_HIDDEN
        await until(hidden, what="the listing hidden by the moderator's decision")
        assert not await publicly_visible(api, pet.name)
        assert (SCREENSHOTS / "web-report.png").stat().st_size > 0
        for name in ("signin-error", "queue", "case", "case-error", "case-resolved", "user", "dashboard",
                     "support-user", "audit"):
            assert (SCREENSHOTS / f"admin-{name}.png").stat().st_size > 0
    finally:
        await fraud.close()
        await api.channel.close()
        await web.stop()
        await edge.stop(grace=1)
        await platform.stop(grace=1)
