from mesh.events.outbox import event_tables
from mesh.sql import run_migrations_online

run_migrations_online(event_tables)
