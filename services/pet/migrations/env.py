from mesh.events.outbox import event_tables
from mesh.sql import run_migrations_online
from services.pet.store import metadata

run_migrations_online([metadata, event_tables])
