"""A local stand-in for Apple's push service: HTTP/2 over TLS (ALPN h2, a self-signed certificate) built
on h2, answering `POST /3/device/{token}` as APNs does. It checks what APNs checks (the provider JWT's
signature with the team's key, its `kid`, `iss` and age; apns-topic, apns-push-type, apns-priority,
apns-id) and refuses a bad request with APNs' status and reason; `answers` queues replies per token."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import ssl
import time
import uuid
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TEAM, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "dev.petplatform.app"


@dataclasses.dataclass
class Seen:
    token: str
    headers: dict[str, str]
    body: dict
    claims: dict


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apns stand-in")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "apns-cert.pem", directory / "apns-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_text(_pem(key))
    return cert_file, key_file


class ApnsStandIn:
    def __init__(self, directory: Path):
        self.signing_key = ec.generate_private_key(ec.SECP256R1())  # the team's .p8 key
        self.key_file = directory / f"AuthKey_{KEY_ID}.p8"
        self.key_file.write_text(_pem(self.signing_key))
        self.ca_file, self._tls_key = _certificate(directory)
        self.seen: list[Seen] = []
        self.answers: dict[str, list[tuple[int, str]]] = {}  # token -> replies, in order; then 200
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.ca_file, self._tls_key)
        tls.set_alpn_protocols(["h2"])
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def for_token(self, token: str) -> list[Seen]:
        return [s for s in self.seen if s.token == token]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            writer.close()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        # header_encoding="utf-8": h2 hands the headers over as str pairs
                        headers = {str(k): str(v) for k, v in event.headers or ()}
                        streams[event.stream_id] = (headers, bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        status, reply = self._answer(headers, bytes(body))
                        out = [(":status", str(status)), ("apns-id", headers.get("apns-id", str(uuid.uuid4())))]
                        if reply:
                            conn.send_headers(event.stream_id, [*out, ("content-type", "application/json")])
                            conn.send_data(event.stream_id, json.dumps({"reason": reply}).encode(), end_stream=True)
                        else:
                            conn.send_headers(event.stream_id, out, end_stream=True)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def _answer(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        path, method = headers.get(":path", ""), headers.get(":method")
        if method != "POST" or not path.startswith("/3/device/"):
            return 405 if method != "POST" else 404, "MethodNotAllowed" if method != "POST" else "BadPath"
        token = path.removeprefix("/3/device/")
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return 403, "MissingProviderToken"
        try:
            provider_token = auth.removeprefix("bearer ")
            if jwt.get_unverified_header(provider_token).get("kid") != KEY_ID:
                return 403, "InvalidProviderToken"
            claims = jwt.decode(provider_token, self.signing_key.public_key(), algorithms=["ES256"],
                                options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken"
        if claims["iss"] != TEAM:
            return 403, "InvalidProviderToken"
        if claims["iat"] < time.time() - 3600:
            return 403, "ExpiredProviderToken"
        if headers.get("apns-topic") != TOPIC:
            return 400, "TopicDisallowed" if headers.get("apns-topic") else "MissingTopic"
        if headers.get("apns-push-type") not in ("alert", "background"):
            return 400, "InvalidPushType"
        if headers.get("apns-priority") not in ("5", "10"):
            return 400, "BadPriority"
        try:
            uuid.UUID(headers.get("apns-id", str(uuid.uuid4())))
            payload = json.loads(body)
        except ValueError:
            return 400, "BadMessageId" if "apns-id" in headers else "PayloadEmpty"
        if not isinstance(payload, dict) or "aps" not in payload:
            return 400, "PayloadEmpty"
        self.seen.append(Seen(token=token, headers=headers, body=payload, claims=claims))
        queued = self.answers.get(token)
        return queued.pop(0) if queued else (200, "")
