"""`petplatform new-service NAME --port N`: the contract, package, migrations and registry entry of
a new service, so every service starts identical. What it writes is a working, empty service: it
serves its contract (no RPCs yet), health and reflection, and has its own schema with an outbox."""
from __future__ import annotations

import keyword
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")
_ENTRY_END = "\n])\n"
RESERVED_PORTS = {3000, 3443, 50051, 3100}  # the edge (HTTP, gRPC), --target=all, the web app


class ScaffoldError(Exception):
    """The service cannot be created as asked (bad name, taken name or port)."""


def create(name: str, port: int, root: Path = ROOT) -> list[Path]:
    """Writes the new service's files under `root` and adds its registry entry; returns the paths."""
    if not _NAME.match(name) or name in ("all", "edge", "web", "common") or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r}: a service name is 2-31 lower-case letters or digits, starting with a letter")
    registry = root / "app" / "registry.py"
    text = registry.read_text()
    if f'name="{name}"' in text or (root / "services" / name).exists():
        raise ScaffoldError(f"a service named {name!r} exists already")
    if re.search(rf"\bport={port}\b", text) or port in RESERVED_PORTS:
        raise ScaffoldError(f"port {port} is taken by another service or the edge")
    if _ENTRY_END not in text:
        raise ScaffoldError(f"{registry}: cannot find the end of the REGISTRY list")
    pascal = name.capitalize()
    files = {
        f"proto/petplatform/{name}/v1/{name}.proto": _PROTO,
        f"proto/petplatform/{name}/v1/events.proto": _EVENTS,
        f"services/{name}/__init__.py": "",
        f"services/{name}/api.py": _API,
        f"services/{name}/domain.py": _DOMAIN,
        f"services/{name}/store.py": _STORE,
        f"services/{name}/module.py": _MODULE,
        f"services/{name}/migrations/env.py": _ENV,
        f"services/{name}/migrations/script.py.mako": (root / "services/pet/migrations/script.py.mako").read_text(),
        f"services/{name}/migrations/versions/0001_initial.py": _INITIAL,
    }
    written = []
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.replace("{name}", name).replace("{Name}", pascal))
        written.append(path)
    imports = f"from petplatform.{name}.v1 import {name}_pb2  # noqa: F401\n"
    text = text.replace("\nREGISTRY = Registry([", imports + "\nREGISTRY = Registry([", 1)
    entry = (f'    ServiceSpec(\n        name="{name}", module="services.{name}.module:{pascal}Module", port={port},\n'
             f'        contracts=("petplatform.{name}.v1.{pascal}Service",), peers=("auth",),\n    ),\n')
    registry.write_text(text.replace(_ENTRY_END, "\n" + entry + "])\n", 1))
    written.append(registry)
    return written


_PROTO = '''syntax = "proto3";

package petplatform.{name}.v1;

// What the {name} service does, in one sentence.
//
// Each RPC: its own Request and Response message, a google.api.http binding
// (see pet.proto) and an access level, e.g.
//   option (petplatform.common.v1.access) = ACCESS_USER;
service {Name}Service {}
'''

_EVENTS = '''syntax = "proto3";

package petplatform.{name}.v1;

// Events of the {name} service. Each is a message naming its routing key:
//
//   import "petplatform/common/v1/event.proto";
//   message ThingHappened {
//     option (petplatform.common.v1.event_type) = "{name}.thing_happened";
//     string thing = 1;  // the resource, `things/{thing}`
//   }
//
// and is listed under `emits` (or `consumes`) in the service's registry entry.
'''

_API = '''"""{Name}Service: maps messages to the domain rules (domain.py) and the queries (store.py)."""
from __future__ import annotations

from mesh.sql import Database
from petplatform.{name}.v1 import {name}_pb2_grpc


class {Name}Servicer({name}_pb2_grpc.{Name}ServiceServicer):
    def __init__(self, db: Database):
        self.db = db
'''

_DOMAIN = '''"""The {name} service's rules: pure functions of values, unit-tested without a server."""
from __future__ import annotations
'''

_STORE = '''"""The {name} service's tables and the queries on them."""
import sqlalchemy as sa

metadata = sa.MetaData()
'''

_MODULE = '''from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mesh.runtime import ServiceModule
from services.{name}.api import {Name}Servicer


class {Name}Module(ServiceModule):
    migrations = Path(__file__).parent / "migrations"  # None for a stateless service

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.{name}.v1.{Name}Service": {Name}Servicer(self.db)}
'''

_ENV = '''from mesh.sql import run_migrations_online
from services.{name}.store import metadata

run_migrations_online(metadata)
'''

_INITIAL = '''"""initial

Revision ID: 0001
Revises:
"""

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''
