from mesh.sql import run_migrations_online
from services.matching.store import metadata

run_migrations_online(metadata)
