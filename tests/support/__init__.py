"""Helpers shared by the test suite, by topic; test files import from here, never from each other.

- platform: the platform under test (settings, start/stop, the edge) and its clients (Api, Session, EdgeClient)
- errors: what an RPC error carries (status, ErrorInfo reason, field violations) and `expect`
- tokens: access tokens signed by hand, good and bad
- web: the edge over HTTP: REST calls, gRPC-Web frames and an off-the-shelf gRPC-Web client
- pets: pets and photos to create
- databases: scratch SQLite files and PostgreSQL schemas for the relational contract suites
- events: buses and databases for the events contract suites
- clock: a clock the test moves

conftest.py holds the fixtures built from these.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # wherever the test using it lives
