"""Admin tables and queries.

One open case per subject rests on the database: a unique index on `cases.open_subject`, which holds
the subject while the case is undecided and NULL once it is resolved (NULLs never collide), so two
reports arriving at once for a new subject cannot open two cases. The audit log is appended under
the lock of its one `audit_head` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's writer lock
serialises every writing transaction), so concurrent appends take turns and the chain cannot fork."""
from __future__ import annotations

from collections.abc import Sequence
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row, UtcDateTime

metadata = sa.MetaData()

# Who is behind a subject, from events: users (user.created), pets (pet.created), chat messages
# (message.sent). Businesses are asked of the marketplace when reported (it publishes no event for them).
# A message's row is kept only while the message can be reported (sent_time, then the purge); users and
# pets (sent_time NULL) are kept for good: one row each, not one per message.
subjects = sa.Table(
    "subjects", metadata,
    sa.Column("name", sa.String(160), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("sent_time", UtcDateTime, nullable=True),
    sa.Index("ix_subjects_sent", "sent_time"),
)

# Accounts as staff see them, from user.created, user.role_changed and user.status_changed.
user_records = sa.Table(
    "user_records", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("role", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_user_records_created", "create_time", "id"),
)

cases = sa.Table(
    "cases", metadata,
    # Time-ordered ids (domain.case_id): within a priority the oldest case comes first.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("subject", sa.String(160), nullable=False),
    sa.Column("open_subject", sa.String(160), nullable=True, unique=True),  # the subject while undecided
    sa.Column("user_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("report_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("risk_score", sa.Float, nullable=False, server_default="0"),
    sa.Column("assignee_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("resolution", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Index("ix_cases_queue", "state", "priority", "id"),
    sa.Index("ix_cases_user", "user_id", "id"),
    sa.Index("ix_cases_subject", "subject", "id"),
)

reports = sa.Table(
    "reports", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("subject", sa.String(160), nullable=False),
    sa.Column("reporter_id", sa.String(32), nullable=False),
    sa.Column("reason", sa.SmallInteger, nullable=False),
    sa.Column("details", sa.Text, nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # One report per person per case: a repeated report updates it.
    sa.UniqueConstraint("case_id", "reporter_id", name="uq_reports_case_reporter"),
    sa.Index("ix_reports_reporter", "reporter_id"),
)

fraud_evidence = sa.Table(
    "fraud_evidence", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("evidence", sa.LargeBinary, nullable=False),  # a serialized admin.v1.FraudEvidence
    sa.Index("ix_fraud_evidence_case", "case_id", "id"),
)

case_actions = sa.Table(
    "case_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("action", sa.SmallInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor_id", sa.String(32), nullable=False),
    sa.Column("reversal", sa.Boolean, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_case_actions_case", "case_id", "id"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# The chain's head: the last entry's sequence and hash, one row (id 1, made by the migration). Appends
# lock it; VerifyAuditLog compares the log's end with it, so removing the newest entries shows.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

daily_counts = sa.Table(
    "daily_counts", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("metric", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)


def _insert(s: AsyncSession, table: sa.Table) -> Any:
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


# --- read models ---

async def remember_subject(s: AsyncSession, *, name: str, user_id: str, sent_time: dt.datetime | None = None) -> None:
    await s.execute(_insert(s, subjects).values(name=name, user_id=user_id, sent_time=sent_time)
                    .on_conflict_do_nothing())


async def find_subject(s: AsyncSession, name: str) -> Row | None:
    return (await s.execute(sa.select(subjects).where(subjects.c.name == name))).first()


async def owner_of(s: AsyncSession, name: str) -> str | None:
    return await s.scalar(sa.select(subjects.c.user_id).where(subjects.c.name == name))


async def add_user_record(s: AsyncSession, **values: Any) -> None:
    await s.execute(_insert(s, user_records).values(**values).on_conflict_do_nothing())


async def update_user_record(s: AsyncSession, user_id: str, **values: Any) -> None:
    await s.execute(user_records.update().where(user_records.c.id == user_id).values(**values))


async def find_user_record(s: AsyncSession, user_id: str) -> Row | None:
    return (await s.execute(sa.select(user_records).where(user_records.c.id == user_id))).first()


async def search_user_records(s: AsyncSession, *, query: str, after: tuple[dt.datetime, str] | None,
                              size: int) -> Sequence[Row]:
    """Records whose email or name holds `query`, any case. A scan: fine for staff's occasional
    searches; a search index (the search port) is the way at scale."""
    from mesh import pagination
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    q = sa.select(user_records).where(sa.or_(sa.func.lower(user_records.c.email).like(pattern, escape="\\"),
                                             sa.func.lower(user_records.c.display_name).like(pattern, escape="\\")))
    q = pagination.select_page(q, after, user_records.c.create_time, user_records.c.id, descending=True, size=size)
    return (await s.execute(q)).all()


async def count_up(s: AsyncSession, *, day: dt.date, metric: str, by: int = 1) -> None:
    stmt = _insert(s, daily_counts).values(day=day, metric=metric, count=by)
    await s.execute(stmt.on_conflict_do_update(index_elements=["day", "metric"],
                                               set_={"count": daily_counts.c.count + by}))


async def counts_between(s: AsyncSession, start: dt.date, end: dt.date) -> dict[tuple[dt.date, str], int]:
    rows = (await s.execute(sa.select(daily_counts).where(daily_counts.c.day.between(start, end)))).all()
    return {(r.day, r.metric): int(r[2]) for r in rows}  # r.count is the tuple's method


# --- cases and reports ---

async def open_case_of(s: AsyncSession, subject: str, *, lock: bool = False) -> Row | None:
    q = sa.select(cases).where(cases.c.open_subject == subject)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def add_case(s: AsyncSession, **values: Any) -> None:
    """IntegrityError when the subject has an open case already (a concurrent first report)."""
    await s.execute(cases.insert().values(open_subject=values["subject"], **values))


async def find_case(s: AsyncSession, case_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(cases).where(cases.c.id == case_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def get_case(s: AsyncSession, case_id: str) -> Row:
    row = await find_case(s, case_id)
    assert row is not None, case_id
    return row


async def update_case(s: AsyncSession, case_id: str, **values: Any) -> None:
    await s.execute(cases.update().where(cases.c.id == case_id).values(**values))


async def list_cases(s: AsyncSession, *, states: Sequence[int], after: tuple[int, str] | None,
                     size: int) -> Sequence[Row]:
    """Highest priority first (ascending by -priority), then oldest (ids are time-ordered)."""
    from mesh import pagination
    q = sa.select(cases).where(cases.c.state.in_(states))
    return (await s.execute(pagination.select_page(q, after, -cases.c.priority, cases.c.id, descending=False,
                                                   size=size))).all()


async def cases_of_user(s: AsyncSession, user_id: str, *, limit: int) -> Sequence[Row]:
    return (await s.execute(sa.select(cases).where(cases.c.user_id == user_id)
                            .order_by(cases.c.id.desc()).limit(limit))).all()


async def find_report(s: AsyncSession, *, case_id: str, reporter_id: str) -> Row | None:
    return (await s.execute(sa.select(reports).where(reports.c.case_id == case_id,
                                                     reports.c.reporter_id == reporter_id))).first()


async def get_report(s: AsyncSession, report_id: str) -> Row:
    row = (await s.execute(sa.select(reports).where(reports.c.id == report_id))).first()
    assert row is not None, report_id
    return row


async def add_report(s: AsyncSession, **values: Any) -> None:
    await s.execute(reports.insert().values(**values))


async def update_report(s: AsyncSession, report_id: str, **values: Any) -> None:
    await s.execute(reports.update().where(reports.c.id == report_id).values(**values))


async def reports_of(s: AsyncSession, case_id: str) -> Sequence[Row]:
    return (await s.execute(sa.select(reports).where(reports.c.case_id == case_id)
                            .order_by(reports.c.create_time, reports.c.id))).all()


async def report_counts(s: AsyncSession, user_id: str) -> tuple[int, int]:
    """(reports about the user's subjects, reports the user made)."""
    received = await s.scalar(sa.select(sa.func.count()).select_from(reports.join(cases)).where(
        cases.c.user_id == user_id))
    made = await s.scalar(sa.select(sa.func.count()).select_from(reports).where(reports.c.reporter_id == user_id))
    return int(received or 0), int(made or 0)


async def add_evidence(s: AsyncSession, *, case_id: str, evidence: bytes) -> None:
    await s.execute(fraud_evidence.insert().values(case_id=case_id, evidence=evidence))


async def evidence_of(s: AsyncSession, case_id: str) -> list[bytes]:
    return list((await s.execute(sa.select(fraud_evidence.c.evidence).where(fraud_evidence.c.case_id == case_id)
                                 .order_by(fraud_evidence.c.id))).scalars())


async def add_action(s: AsyncSession, **values: Any) -> None:
    await s.execute(case_actions.insert().values(**values))


async def actions_of(s: AsyncSession, case_id: str) -> Sequence[Row]:
    return (await s.execute(sa.select(case_actions).where(case_actions.c.case_id == case_id)
                            .order_by(case_actions.c.id))).all()


# --- the audit log ---

async def lock_audit_head(s: AsyncSession) -> Row:
    return (await s.execute(sa.select(audit_head).where(audit_head.c.id == 1).with_for_update())).one()


async def append_audit_row(s: AsyncSession, *, head_sequence: int, **values: Any) -> None:
    await s.execute(audit_log.insert().values(**values))
    await s.execute(audit_head.update().where(audit_head.c.id == 1, audit_head.c.sequence == head_sequence)
                    .values(sequence=values["sequence"], hash=values["hash"]))


async def audit_page(s: AsyncSession, *, before: int | None, size: int) -> Sequence[Row]:
    q = sa.select(audit_log)
    if before is not None:
        q = q.where(audit_log.c.sequence < before)
    return (await s.execute(q.order_by(audit_log.c.sequence.desc()).limit(size + 1))).all()


async def audit_batch(s: AsyncSession, *, after: int, size: int) -> Sequence[Row]:
    return (await s.execute(sa.select(audit_log).where(audit_log.c.sequence > after)
                            .order_by(audit_log.c.sequence).limit(size))).all()


async def audit_head_row(s: AsyncSession) -> Row:
    return (await s.execute(sa.select(audit_head).where(audit_head.c.id == 1))).one()
