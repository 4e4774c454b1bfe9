"""Small pure pieces of the runtime: settings validation, AIP helpers, password policy, log masking."""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys

from google.protobuf import field_mask_pb2
import pytest
import structlog

from mesh import errors, logs
from mesh.config import ConfigError, load_settings
from mesh.logs import mask_email
from mesh.resources import check_mask, decode_page_token, encode_page_token, page_size, page_token_key, parse_name
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2
from services.auth import passwords


def test_bad_settings_name_the_variable(monkeypatch):
    monkeypatch.setenv("PETPLATFORM_GRPC_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="PETPLATFORM_GRPC_PORT"):
        load_settings()


def test_real_profile_names_every_missing_url():
    with pytest.raises(ConfigError) as e:
        load_settings(profile="real", database_url="postgresql+asyncpg://x/y")
    for name in ("PETPLATFORM_AMQP_URL", "PETPLATFORM_REDIS_URL", "PETPLATFORM_S3_ENDPOINT"):
        assert name in str(e.value)
    assert "PETPLATFORM_DATABASE_URL" not in str(e.value)


def test_bcrypt_cost_below_12_is_refused_in_the_real_profile():
    real = dict(profile="real", database_url="postgresql+asyncpg://x/y", amqp_url="amqp://x", redis_url="redis://x",
                s3_endpoint="x:9000", edge_key="k" * 32, page_token_key="p" * 32, mfa_encryption_key="A" * 43 + "=")
    assert load_settings(**real).bcrypt_rounds == 12
    with pytest.raises(ConfigError, match="PETPLATFORM_BCRYPT_ROUNDS"):
        load_settings(**real, bcrypt_rounds=11)
    with pytest.raises(ConfigError, match="PETPLATFORM_BCRYPT_ROUNDS"):
        load_settings(bcrypt_rounds=3)
    assert load_settings(bcrypt_rounds=4).bcrypt_rounds == 4  # embedded: development and tests


def test_cli_reports_bad_configuration_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "app.cli", "run"], capture_output=True, text=True,
                         env={"PETPLATFORM_PROFILE": "cloud", "PATH": ""})
    assert out.returncode == 2
    assert "PETPLATFORM_PROFILE" in out.stderr and "Traceback" not in out.stderr


def test_a_misspelt_service_address_stops_the_start():
    out = subprocess.run([sys.executable, "-m", "app.cli", "run"], capture_output=True, text=True,
                         env={"PETPLATFORM_MATCHNG_ADDR": "10.0.0.1:3004", "PETPLATFORM_PET_ADDR": "x:1", "PATH": ""})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "PETPLATFORM_MATCHNG_ADDR" in out.stderr and "PETPLATFORM_PET_ADDR" in out.stderr  # the known ones


def test_peer_addresses_come_from_the_registry():
    from mesh.registry import peer_addresses
    ports = {"auth": 3001, "pet": 3003}
    assert peer_addresses(ports, "h", {"PETPLATFORM_PET_ADDR": "pets:9", "OTHER_ADDR": "x"}) == {
        "auth": "h:3001", "pet": "pets:9"}
    with pytest.raises(ConfigError, match="PETPLATFORM_USER_ADDR"):
        peer_addresses(ports, "h", {"PETPLATFORM_USER_ADDR": "u:1"})


def test_the_registry_refuses_what_cannot_run():
    from mesh.registry import Registry, ServiceSpec
    auth = "petplatform.auth.v1.AuthService"

    def spec(name: str, port: int, **kw) -> ServiceSpec:
        return ServiceSpec(name=name, module="x:Y", contracts=(auth,), port=port, **kw)
    user = "petplatform.user.v1.UserService"
    for bad, why in (([spec("a", 1), spec("b", 1)], "port"), ([spec("a", 1, peers=("c",))], "unknown peer"),
                     ([spec("a", 1), ServiceSpec(name="a", module="x:Y", contracts=(user,), port=2)], "name"),
                     ([spec("a", 1), spec("b", 2)], "contract"),
                     ([spec("a", 1, peers=("b",)), ServiceSpec(name="b", module="x:Y", contracts=(user,), port=2,
                                                               peers=("a",))], "cycle"),
                     ([spec("all", 1)], "not 'all'"), ([spec("web", 1)], "'web'")):  # web: the web app's target
        with pytest.raises((ValueError, Exception), match=why):
            Registry(bad)
    with pytest.raises(KeyError):
        Registry([ServiceSpec(name="a", module="x:Y", contracts=("petplatform.nope.v1.Nope",), port=1)])
    ordered = Registry([spec("front", 1, peers=("core",)),
                        ServiceSpec(name="core", module="x:Y", contracts=(user,), port=2)]).target("all")
    assert [s.name for s in ordered] == ["core", "front"], "peers start first"
    two = Registry([spec("front", 1, peers=("core",)),
                    ServiceSpec(name="core", module="x:Y", contracts=(user,), port=2)])
    assert [s.name for s in two.target("front,core")] == ["core", "front"], "a list of services, peers first"
    with pytest.raises(ValueError, match="'nope'"):
        two.target("front,nope")


def test_parse_name():
    pid = "a" * 32
    assert parse_name(f"pets/{pid}/photos/{'b' * 32}", "pets/{}/photos/{}") == [pid, "b" * 32]
    for bad in ("pets/", "pets/xyz", f"users/{pid}", f"pets/{pid}/extra", f"pets/{pid.upper()}"):
        with pytest.raises(errors.ApiError) as e:
            parse_name(bad, "pets/{}")
        assert e.value.code.name == "INVALID_ARGUMENT"


def test_page_tokens_are_signed(tmp_path):
    q = pet_pb2.ListPetsRequest(breed="Beagle")
    token = encode_page_token(["2026-01-01T00:00:00", "abc"], q)
    payload, signature = token.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"p":[1,{"x":2}],"q":"' + json.loads(
        base64.urlsafe_b64decode(payload + "==="))["q"].encode() + b'"}').decode().rstrip("=")
    for forged in (f"{unsigned}.{signature}", unsigned, f"{payload}.{signature[:-2]}", f"{payload}x.{signature}",
                   f"{payload}.{signature}.{signature}", "a" * 2000, f"{payload}.%%%", "."):
        with pytest.raises(errors.ApiError) as e:
            decode_page_token(forged, q)
        assert e.value.code.name == "INVALID_ARGUMENT", forged
    other = pet_pb2.ListHealthRecordsRequest(parent="pets/x")
    with pytest.raises(errors.ApiError):  # same bytes on the wire, another request
        decode_page_token(encode_page_token(["2026-01-01", "abc"], user_pb2.ListReviewsRequest(parent="pets/x")), other)
    # The key: the setting, else kept under the data dir (embedded), else one per process.
    key = "k" * 40
    assert page_token_key(load_settings(data_dir=tmp_path, page_token_key=key)) == key.encode()
    embedded = page_token_key(load_settings(data_dir=tmp_path))
    assert embedded == page_token_key(load_settings(data_dir=tmp_path)) != page_token_key(
        load_settings(data_dir=tmp_path / "elsewhere"))
    assert (tmp_path / "page-token-key").stat().st_mode & 0o077 == 0
    real = dict(profile="real", database_url="x", amqp_url="x", redis_url="x", s3_endpoint="x", edge_key="e" * 32,
                mfa_encryption_key="A" * 43 + "=")
    with pytest.raises(ConfigError, match="PETPLATFORM_PAGE_TOKEN_KEY"):  # replicas must share it
        load_settings(**real)
    with pytest.raises(ConfigError):
        load_settings(page_token_key="short")


def test_page_tokens_are_bound_to_the_query():
    q = pet_pb2.ListPetsRequest(breed="Beagle", page_size=5)
    token = encode_page_token(["2026-01-01T00:00:00", "abc"], q)
    assert decode_page_token(token, pet_pb2.ListPetsRequest(breed="Beagle", page_size=50)) == [
        "2026-01-01T00:00:00", "abc"]
    for bad_token, query in ((token, pet_pb2.ListPetsRequest(breed="Pug")), ("!!garbage", q), ("e30", q)):
        with pytest.raises(errors.ApiError):
            decode_page_token(bad_token, query)
    assert page_size(0) == 20 and page_size(1000) == 100
    with pytest.raises(errors.ApiError):
        page_size(-1)


def test_update_masks():
    allowed = {"display_name", "breed"}
    assert check_mask(field_mask_pb2.FieldMask(paths=["*"]), allowed) == allowed
    for paths in ([], ["owner"], ["*", "breed"]):
        with pytest.raises(errors.ApiError):
            check_mask(field_mask_pb2.FieldMask(paths=paths), allowed)


@pytest.mark.parametrize("pw, ok", [
    ("correct horse battery staple", True), ("12345678", False), ("Password", False), ("ab" * 64, True),
    ("ab" * 64 + "c", False), ("short", False), ("ＰＡＳＳＷＯＲＤ", False),  # full-width folds to PASSWORD
])
def test_password_policy(pw, ok):
    assert (passwords.problems(pw, context=[]) is None) == ok


def test_emails_are_masked_in_logs():
    assert mask_email("login for alice.smith@example.com failed") == "login for a***@example.com failed"


def test_a_log_call_below_the_level_builds_nothing(monkeypatch):
    """The processors (context, timestamp, masking) run only for events that will be written."""
    built: list[str] = []
    monkeypatch.setattr(logs, "_mask", lambda _l, _n, event: built.append(event["event"]) or event)
    logger = logging.getLogger("test.levels")
    monkeypatch.setattr(logger, "level", logging.WARNING)
    try:
        logs.configure("info", json=False)
        log = structlog.get_logger("test.levels")
        log.info("dropped")
        log.warning("written")
    finally:
        logs.configure("info", json=False)  # as tests/support/platform.py left it
    assert built == ["written"]


def test_bad_opentelemetry_settings_stop_the_program_at_start(tmp_path):
    env = {**os.environ, "PETPLATFORM_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
           "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}
    done = subprocess.run([sys.executable, "-m", "app.cli", "run", "--target=edge"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "OTEL_EXPORTER_OTLP_COMPRESSION" in done.stderr
