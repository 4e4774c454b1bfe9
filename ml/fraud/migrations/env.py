from mesh.sql import run_migrations_online
from ml.fraud.store import metadata

run_migrations_online(metadata)
