from mesh.sql import run_migrations_online
from services.admin.store import metadata

run_migrations_online(metadata)
