from mesh.sql import run_migrations_online
from services.notification.store import metadata

run_migrations_online(metadata)
