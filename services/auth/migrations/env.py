from mesh.sql import run_migrations_online
from services.auth.store import metadata

run_migrations_online(metadata)
