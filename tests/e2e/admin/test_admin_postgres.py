"""On PostgreSQL and RabbitMQ: concurrent first reports of one subject open one case (its open-subject
key), concurrent staff actions append one unforked audit chain (the head row's FOR UPDATE), and a
fraud score over RabbitMQ opens a case with the hold."""
from __future__ import annotations

import asyncio

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from tests.e2e.admin.test_audit_and_records import all_entries, verify
from tests.e2e.admin.test_moderation import _known, actions, case_of
from tests.support.admin import fraud_detected, report
from tests.support.matching import until
from tests.support.pets import create, dog
from tests.support.platform import Api


async def test_concurrent_first_reports_and_staff_actions_on_postgres(real_admin_api: Api):
    api = real_admin_api
    owner = await api.signup("Owner")
    pet = await create(api, owner, dog("Pg Dog"))
    reporters = [await api.signup(f"Reporter {i}") for i in range(10)]
    await until(lambda: _known(api, pet.name), what="the pet known to admin over RabbitMQ")
    await asyncio.gather(*(report(api, r, pet.name) for r in reporters))
    case = await case_of(api, pet.name)
    assert (case.report_count, len(case.reports), case.priority) == (10, 10, 100)
    await asyncio.gather(*(api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query=f"q{i}x"),
                                                       metadata=api.support.md) for i in range(20)),
                         api.admin.ClaimCase(a.ClaimCaseRequest(name=case.name), metadata=api.moderator.md))
    entries = await all_entries(api)
    assert [e.sequence for e in entries] == list(range(len(entries), 0, -1)) and len(entries) >= 21
    assert (await verify(api)).intact


async def test_a_fraud_hold_over_rabbitmq(real_admin_api: Api):
    api = real_admin_api
    owner = await api.signup("Scam Owner")
    pet = await create(api, owner, dog("Too Cheap"))
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.95, hold=True))
    case = await case_of(api, pet.name)
    assert case.held and case.priority == 95
    held = [m for m in await actions(api) if m.case == case.name]
    assert [(m.action, m.actor) for m in held] == [(ev.ModerationActionTaken.ACTION_HOLD_LISTING, "")]


async def test_message_subjects_purged_by_two_replicas_at_once_on_postgres(real_admin_api: Api):
    from tests.e2e.admin.test_subject_retention import window_scenario
    await window_scenario(real_admin_api, replicas=2)
