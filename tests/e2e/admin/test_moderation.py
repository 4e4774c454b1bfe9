"""Reports, the moderation queue and its actions, through AdminService's public API: duplicates merged,
one case per subject, priorities from reports and fraud scores, the automatic hold, claims, decisions
published as moderation.action_taken (and user.reported), reversals by admins only."""
from __future__ import annotations

import asyncio

import grpc

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.user.v1 import events_pb2 as user_events
from tests.support.admin import fraud_detected, open_case_of, report, report_when_known
from tests.support.errors import expect, violations
from tests.support.matching import events, until
from tests.support.pets import create, dog
from tests.support.platform import Api

Action = ev.ModerationActionTaken
C = a.Case
PD, IA, NF, FP = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                  grpc.StatusCode.FAILED_PRECONDITION)


async def get_case(api: Api, name: str) -> a.Case:
    return (await api.admin.GetCase(a.GetCaseRequest(name=name), metadata=api.moderator.md)).case


async def case_of(api: Api, subject: str) -> a.Case:
    found = await until(lambda: open_case_of(api, subject), what=f"a case about {subject}")
    return await get_case(api, found.name)


async def actions(api: Api) -> list[ev.ModerationActionTaken]:
    out = []
    for e in await events(api, "admin", "moderation.action_taken"):
        m = ev.ModerationActionTaken()
        e.payload.Unpack(m)
        out.append(m)
    return out


async def a_listing(api: Api):
    owner = await api.signup("Pet Owner")
    pet = await create(api, owner, dog("Biscuit"))
    return owner, pet


async def test_a_repeated_report_is_merged_and_reporters_raise_the_priority(admin_api: Api):
    api = admin_api
    owner, pet = await a_listing(api)
    first_reporter, second_reporter = await api.signup("Reporter One"), await api.signup("Reporter Two")
    first = await report_when_known(api, first_reporter, pet.name, details="asks for a deposit")
    again = await report(api, first_reporter, pet.name, a.REPORT_REASON_MISLEADING, "and the photos are stock")
    assert again.name == first.name and again.reason == a.REPORT_REASON_MISLEADING
    assert again.reporter == first_reporter.name
    await report(api, second_reporter, pet.name)
    case = await case_of(api, pet.name)
    assert (case.report_count, case.priority, case.state) == (2, 20, C.STATE_OPEN)
    assert case.user == owner.name
    assert {r.reporter for r in case.reports} == {first_reporter.name, second_reporter.name}
    assert [r.details for r in case.reports if r.reporter == first_reporter.name] == ["and the photos are stock"]
    # The reported owner cannot see the case, its reports or who made them.
    await expect(PD, api.admin.GetCase(a.GetCaseRequest(name=case.name), metadata=owner.md), "MODERATORS_ONLY")
    await expect(PD, api.admin.ListCases(a.ListCasesRequest(), metadata=owner.md), "MODERATORS_ONLY")


async def test_bad_reports_are_refused_with_the_field(admin_api: Api):
    api = admin_api
    someone = await api.signup("Someone")
    for subject, field in [("pets/nope", "report.subject"), ("dogs/0123456789abcdef0123456789abcdef", "report.subject"),
                           ("", "report.subject")]:
        err = await expect(IA, api.admin.CreateReport(a.CreateReportRequest(report=a.Report(
            subject=subject, reason=a.REPORT_REASON_SPAM)), metadata=someone.md))
        assert field in violations(err)
    err = await expect(IA, api.admin.CreateReport(a.CreateReportRequest(report=a.Report(
        subject=someone.name, reason=99, details="x" * 2001)), metadata=someone.md))  # type: ignore[arg-type]
    assert {"report.reason", "report.details"} <= set(violations(err))
    await expect(IA, api.admin.CreateReport(a.CreateReportRequest(), metadata=someone.md), "MISSING_FIELD")
    await expect(NF, report(api, someone, "pets/0123456789abcdef0123456789abcdef"))
    await expect(NF, report(api, someone, "businesses/0123456789abcdef0123456789abcdef"))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.admin.CreateReport(a.CreateReportRequest(report=a.Report(
        subject=someone.name, reason=a.REPORT_REASON_SPAM))))
    # Nobody reports themselves (or their own pet).
    await until(lambda: _known(api, someone.name), what="the account known to admin")
    await expect(IA, report(api, someone, someone.name))


async def _known(api: Api, user: str) -> bool:
    from services.admin import store
    from tests.support.platform import module_of
    async with module_of(api, "admin").db.read() as s:
        return await store.owner_of(s, user) is not None


async def test_concurrent_first_reports_open_one_case(admin_api: Api):
    api = admin_api
    _, pet = await a_listing(api)
    reporters = [await api.signup(f"Crowd {i}") for i in range(8)]
    await report_when_known(api, reporters[0], pet.name)
    _, pet2 = await a_listing(api)
    await until(lambda: _known(api, pet2.name), what="the pet known to admin")
    made = await asyncio.gather(*(report(api, r, pet2.name) for r in reporters))
    assert len({m.name for m in made}) == 8
    case = await case_of(api, pet2.name)
    assert case.report_count == 8 and len(case.reports) == 8


async def test_a_held_fraud_score_opens_a_case_and_holds_the_listing(admin_api: Api):
    api = admin_api
    owner, pet = await a_listing(api)
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.93, hold=True))
    case = await case_of(api, pet.name)
    assert case.held and case.risk_score == 0.93 and case.priority == 93 and case.user == owner.name
    assert [f.code for f in case.evidence[0].factors] == ["price_far_below_typical", "payment_off_platform"]
    assert case.evidence[0].hold and case.evidence[0].model == "test-model-1"
    hold = [m for m in await actions(api) if m.case == case.name]
    assert [(m.action, m.actor, m.reversal, m.upheld) for m in hold] == [(Action.ACTION_HOLD_LISTING, "", False, False)]
    assert hold[0].subject == pet.name and hold[0].user == owner.name
    # A second score of the same listing joins the case, without a second hold.
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.97, hold=True))
    await until(lambda: _evidence_count(api, case.name, 2), what="the second score")
    again = await get_case(api, case.name)
    assert again.priority == 97 and len([m for m in await actions(api) if m.case == case.name]) == 1
    # The queue puts it above cases with fewer reasons for concern.
    listed = (await api.admin.ListCases(a.ListCasesRequest(page_size=100), metadata=api.moderator.md)).cases
    priorities = [c.priority for c in listed]
    assert priorities == sorted(priorities, reverse=True) and case.name in [c.name for c in listed]


async def _evidence_count(api: Api, name: str, n: int) -> bool:
    return len((await get_case(api, name)).evidence) == n


async def test_a_moderator_claims_and_bans_and_an_admin_reverses(admin_api: Api):
    api = admin_api
    scammer = await api.signup("Scammer")
    victims = [await api.signup("Victim A"), await api.signup("Victim B")]
    for v in victims:
        await report_when_known(api, v, scammer.name, details="wanted a gift card")
    case = await case_of(api, scammer.name)
    claimed = (await api.admin.ClaimCase(a.ClaimCaseRequest(name=case.name), metadata=api.moderator.md)).case
    assert (claimed.state, claimed.assignee) == (C.STATE_IN_REVIEW, api.moderator.name)
    await expect(FP, api.admin.ClaimCase(a.ClaimCaseRequest(name=case.name), metadata=api.moderator2.md),
                 "CASE_CLAIMED")
    ban = a.ResolveCaseRequest(name=case.name, action=Action.ACTION_BAN_USER, reason="gift card scam")
    await expect(FP, api.admin.ResolveCase(ban, metadata=api.moderator2.md), "CASE_CLAIMED")
    await expect(FP, api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_HIDE_LISTING, reason="x"), metadata=api.moderator.md), "NOT_A_LISTING")
    await expect(IA, api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_HOLD_LISTING, reason="x"), metadata=api.moderator.md))
    await expect(IA, api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_BAN_USER, reason="   "), metadata=api.moderator.md))
    resolved = (await api.admin.ResolveCase(ban, metadata=api.moderator.md)).case
    assert (resolved.state, resolved.resolution) == (C.STATE_RESOLVED, Action.ACTION_BAN_USER)
    assert (await api.admin.ResolveCase(ban, metadata=api.moderator.md)).case == resolved  # a retry
    await expect(FP, api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_DISMISS, reason="changed my mind"), metadata=api.moderator.md),
        "CASE_RESOLVED")
    taken = [m for m in await actions(api) if m.case == case.name]
    assert [(m.action, m.actor, m.upheld, m.reversal, m.user, m.reason) for m in taken] == [
        (Action.ACTION_BAN_USER, api.moderator.name, True, False, scammer.name, "gift card scam")]
    # The reported party never learns who reported: the published decision names no reporter.
    published = b"".join(e.SerializeToString() for e in await events(api, "admin", "moderation.action_taken"))
    assert all(v.user_id.encode() not in published for v in victims)
    # Each upheld report about the user reaches the user service's trust score.
    reported = []
    for e in await events(api, "admin", "user.reported"):
        m = user_events.UserReported()
        e.payload.Unpack(m)
        reported.append(m)
    reports = (await get_case(api, case.name)).reports
    assert sorted(m.report for m in reported if m.user == scammer.name) == sorted(r.name for r in reports)
    assert len(reports) == 2
    # Only admins reverse.
    undo = a.ReverseActionRequest(name=case.name, reason="wrong account")
    await expect(PD, api.admin.ReverseAction(undo, metadata=api.moderator.md), "ADMIN_ONLY")
    reopened = (await api.admin.ReverseAction(undo, metadata=api.admin_session.md)).case
    assert (reopened.state, reopened.resolution, reopened.assignee) == (C.STATE_OPEN, 0, "")
    last = [m for m in await actions(api) if m.case == case.name][-1]
    assert (last.action, last.reversal, last.upheld, last.actor) == (
        Action.ACTION_BAN_USER, True, False, api.admin_session.name)
    await expect(FP, api.admin.ReverseAction(undo, metadata=api.admin_session.md), "NOTHING_TO_REVERSE")
    full = await get_case(api, case.name)
    assert [(x.action, x.reversal) for x in full.actions] == [(Action.ACTION_BAN_USER, False),
                                                             (Action.ACTION_BAN_USER, True)]


async def test_dismissing_a_held_listing_lifts_the_hold(admin_api: Api):
    api = admin_api
    owner, pet = await a_listing(api)
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.9, hold=True))
    case = await case_of(api, pet.name)
    done = (await api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_DISMISS, reason="a real rescue, cheap on purpose"),
        metadata=api.moderator.md)).case
    assert not done.held
    taken = [(m.action, m.reversal, m.upheld) for m in await actions(api) if m.case == case.name]
    assert taken == [(Action.ACTION_HOLD_LISTING, False, False), (Action.ACTION_DISMISS, False, False),
                     (Action.ACTION_HOLD_LISTING, True, False)]
    # A new report after the decision opens a new case.
    await report(api, await api.signup("Later"), pet.name)
    newer = await case_of(api, pet.name)
    assert newer.name != case.name and newer.state == C.STATE_OPEN


async def test_the_queue_pages_by_priority_and_filters_by_state(admin_api: Api):
    api = admin_api
    seen, token = [], ""
    while True:
        page = await api.admin.ListCases(a.ListCasesRequest(page_size=2, page_token=token), metadata=api.moderator.md)
        seen += page.cases
        if not (token := page.next_page_token):
            break
    assert len({c.name for c in seen}) == len(seen)
    assert all(c.state in (C.STATE_OPEN, C.STATE_IN_REVIEW) for c in seen)
    keys = [(-c.priority, c.name) for c in seen]
    assert keys == sorted(keys)
    resolved = (await api.admin.ListCases(a.ListCasesRequest(states=[C.STATE_RESOLVED], page_size=100),
                                          metadata=api.moderator.md)).cases
    assert all(c.state == C.STATE_RESOLVED for c in resolved)
    await expect(IA, api.admin.ListCases(a.ListCasesRequest(states=[0]), metadata=api.moderator.md))
    await expect(IA, api.admin.ListCases(a.ListCasesRequest(page_token="forged.token"), metadata=api.moderator.md))
    page = await api.admin.ListCases(a.ListCasesRequest(page_size=1), metadata=api.moderator.md)
    if page.next_page_token:
        await expect(IA, api.admin.ListCases(a.ListCasesRequest(page_size=1, page_token=page.next_page_token,
                                                                states=[C.STATE_RESOLVED]), metadata=api.moderator.md))
    await expect(NF, api.admin.GetCase(a.GetCaseRequest(name="cases/0123456789abcdef0123456789abcdef"),
                                       metadata=api.moderator.md))
    await expect(IA, api.admin.GetCase(a.GetCaseRequest(name="cases/../x"), metadata=api.moderator.md))
    # Support reads accounts but does not moderate.
    await expect(PD, api.admin.ListCases(a.ListCasesRequest(), metadata=api.support.md), "MODERATORS_ONLY")


async def test_a_replayed_fraud_score_is_applied_once(admin_api: Api):
    api = admin_api
    owner, pet = await a_listing(api)
    (event_id,) = await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.8))
    case = await case_of(api, pet.name)
    await until(lambda: _evidence_count(api, case.name, 1), what="the score")
    await api.fraud.replay(event_id)
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.5))  # a later, distinct score: the marker
    await until(lambda: _evidence_count(api, case.name, 2), what="the later score")
    again = await get_case(api, case.name)
    assert [e.score for e in again.evidence] == [0.8, 0.5] and again.priority == 80 and not again.held


async def test_reversing_a_hidden_held_listing_lifts_the_hold_too(admin_api: Api):
    api = admin_api
    owner, pet = await a_listing(api)
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.9, hold=True))
    case = await case_of(api, pet.name)
    hidden = (await api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_HIDE_LISTING, reason="stolen photos"), metadata=api.moderator.md)).case
    assert hidden.held, "hiding keeps the listing from view: the hold stands"
    reopened = (await api.admin.ReverseAction(a.ReverseActionRequest(name=case.name, reason="the photos are hers"),
                                              metadata=api.admin_session.md)).case
    assert (reopened.state, reopened.held) == (C.STATE_OPEN, False)
    taken = [(m.action, m.reversal) for m in await actions(api) if m.case == case.name]
    assert taken == [(Action.ACTION_HOLD_LISTING, False), (Action.ACTION_HIDE_LISTING, False),
                     (Action.ACTION_HIDE_LISTING, True), (Action.ACTION_HOLD_LISTING, True)]
    # The pet service shows the listing again.
    from petplatform.pet.v1 import pet_pb2

    async def visible():
        try:
            return (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet
        except grpc.aio.AioRpcError:
            return None
    await until(visible, what="the listing shown again")
