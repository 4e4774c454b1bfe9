from mesh.sql import run_migrations_online
from services.chat.store import metadata

run_migrations_online(metadata)
