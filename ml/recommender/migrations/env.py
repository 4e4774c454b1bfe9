from mesh.sql import run_migrations_online
from ml.recommender.store import metadata

run_migrations_online(metadata)
