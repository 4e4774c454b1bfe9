"""The gRPC pass-through relays bidirectional streams, with metadata both ways and the edge policy in
front. No contract has a bidi RPC yet (chat will), so this one is compiled for the test, behind a
real socket on each side of the edge."""
from __future__ import annotations

import pathlib

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_tools import protoc
import grpc
import pytest

from mesh.limits import decoder_pool
from gateway.passthrough import PassThrough
from gateway.policy import EdgePolicy
from gateway.upstream import OpenStreams
from mesh.cache import MemoryCache
from mesh.fanout import InProcessFanout
from mesh.principal import TokenVerifier
from mesh.revocation import Revocations
from tests.support import REPO_ROOT as ROOT
from tests.support.platform import embedded_settings

ECHO = """
syntax = "proto3";
package petplatform.echotest.v1;
import "petplatform/common/v1/access.proto";
message EchoMessage { string text = 1; }
service EchoService {
  rpc Echo(stream EchoMessage) returns (stream EchoMessage) {
    option (petplatform.common.v1.access) = ACCESS_PUBLIC;
  }
  rpc SecretEcho(stream EchoMessage) returns (stream EchoMessage) {
    option (petplatform.common.v1.access) = ACCESS_USER;
  }
}
"""
PATH = "/petplatform.echotest.v1.EchoService/Echo"


@pytest.fixture(scope="module")
def echo_contract(tmp_path_factory):
    d = tmp_path_factory.mktemp("echo")
    (d / "echo.proto").write_text(ECHO)
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{d}", f"-I{ROOT / 'proto'}", f"-I{well_known}",
                        f"--descriptor_set_out={d / 'set.binpb'}", "echo.proto"]) == 0
    (file,) = descriptor_pb2.FileDescriptorSet.FromString((d / "set.binpb").read_bytes()).file
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.Add(file)


class Echo(grpc.GenericRpcHandler):
    """The service behind the edge: echoes every message, and shows what metadata reached it."""

    def service(self, details):
        if not details.method.startswith("/petplatform.echotest.v1.EchoService/"):
            return None

        async def echo(requests, context):
            md = dict(context.invocation_metadata())
            await context.send_initial_metadata((("seen-app-key", md.get("app-key", "")),))
            async for raw in requests:
                yield raw
            context.set_trailing_metadata((("echoed", "yes"),))
        return grpc.stream_stream_rpc_method_handler(echo)


async def test_bidi_streams_pass_through_with_metadata_and_policy(echo_contract, tmp_path, smtp_sink):
    backend = grpc.aio.server()
    backend.add_generic_rpc_handlers((Echo(),))
    backend_port = backend.add_insecure_port("127.0.0.1:0")
    await backend.start()
    settings = embedded_settings(tmp_path, smtp_sink)
    upstream = grpc.aio.insecure_channel(f"127.0.0.1:{backend_port}")

    async def no_keys():
        return []
    verifier = TokenVerifier(no_keys, Revocations(MemoryCache(), InProcessFanout()), issuer="petplatform")
    policy = EdgePolicy(settings, MemoryCache(), verifier, "test-edge-key")
    edge = grpc.aio.server()
    edge.add_generic_rpc_handlers((PassThrough(policy, lambda module: upstream, OpenStreams(), decoder_pool()),))
    edge_port = edge.add_insecure_port("127.0.0.1:0")
    await edge.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as ch:
            call = ch.stream_stream(PATH)(metadata=(("app-key", "k1"),))
            replies = []
            for text in (b"\x0a\x03one", b"\x0a\x03two"):  # EchoMessage{text}
                await call.write(text)
                replies.append(await call.read())
            await call.done_writing()
            assert replies == [b"\x0a\x03one", b"\x0a\x03two"], "each message came back as it went"
            assert ("seen-app-key", "k1") in tuple(await call.initial_metadata()), "metadata went in, and out"
            assert ("echoed", "yes") in tuple(await call.trailing_metadata())
            assert await call.code() == grpc.StatusCode.OK

            secret = ch.stream_stream("/petplatform.echotest.v1.EchoService/SecretEcho")()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await secret.read()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, "the policy stands in front of bidi too"
    finally:
        await edge.stop(grace=1)
        await backend.stop(grace=1)
        await upstream.close()
