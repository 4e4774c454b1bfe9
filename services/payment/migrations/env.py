from mesh.sql import run_migrations_online
from services.payment.store import metadata

run_migrations_online(metadata)
