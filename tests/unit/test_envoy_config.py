"""envoy/envoy.yaml, checked as far as possible without Envoy: parsed into Envoy's own Bootstrap
message (xds-protos), so a misspelt field or filter type fails here, and checked against proto/."""
from __future__ import annotations

import pathlib

from google.protobuf import descriptor_pb2, json_format
import yaml

from mesh.client_address import CLIENT_ADDRESS_HEADER, EDGE_KEY_HEADER

# Registers the types the config's typed_config fields name.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.grpc_json_transcoder.v3 import transcoder_pb2
from envoy.extensions.filters.http.grpc_web.v3 import grpc_web_pb2  # noqa: F401
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

from app.registry import REGISTRY
from gateway.edge import PAGE_PREFIXES
from mesh.interceptor import method_access
from petplatform.common.v1 import access_pb2
from tools import envoy_config

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def bootstrap() -> bootstrap_pb2.Bootstrap:
    return json_format.ParseDict(yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text()),
                                 bootstrap_pb2.Bootstrap())


def managers(b: bootstrap_pb2.Bootstrap) -> list[hcm_pb2.HttpConnectionManager]:
    out = []
    for listener in b.static_resources.listeners:
        m = hcm_pb2.HttpConnectionManager()
        assert listener.filter_chains[0].filters[0].typed_config.Unpack(m)
        out.append(m)
    return out


def contract_methods() -> dict[str, list[str]]:
    """Services and methods in the descriptor set `make gen` builds for Envoy's transcoder, of every
    contract a registry entry serves (a contract may be published before its service exists)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "build" / "descriptors.binpb").read_bytes())
    return {f"{f.package}.{s.name}": [m.name for m in s.method]
            for f in fds.file if f.package.startswith("petplatform.") for s in f.service
            if f"{f.package}.{s.name}" in REGISTRY.routes}


def test_committed_config_is_generated_from_the_current_contracts():
    assert (ROOT / "envoy" / "envoy.yaml").read_text() == envoy_config.render(), "run `make envoy`"


def test_config_parses_into_envoys_bootstrap():
    b = bootstrap()
    assert [li.address.socket_address.port_value for li in b.static_resources.listeners] == [3000, 3443]
    names = [f.name for f in managers(b)[0].http_filters]
    assert names == ["envoy.filters.http.cors", "envoy.filters.http.grpc_web",
                     "envoy.filters.http.grpc_json_transcoder",
                     "envoy.filters.http.header_mutation", "envoy.filters.http.jwt_authn",
                     "envoy.filters.http.ratelimit", "envoy.filters.http.router"]


def test_every_service_is_transcoded_routed_and_health_checked():
    b = bootstrap()
    services = contract_methods()
    http, grpc_only = managers(b)
    transcoder = transcoder_pb2.GrpcJsonTranscoder()
    assert next(f for f in http.http_filters if f.name.endswith("transcoder")).typed_config.Unpack(transcoder)
    assert set(transcoder.services) == set(services)
    clusters = {c.name: c for c in b.static_resources.clusters}
    for manager in (http, grpc_only):
        prefixes = {r.match.prefix: r.route.cluster for r in manager.route_config.virtual_hosts[0].routes
                    if r.match.prefix}
        for service in services:
            cluster = prefixes[f"/{service}/"]
            assert clusters[cluster].health_checks[0].grpc_health_check.service_name == service
            assert clusters[cluster].connect_timeout.seconds > 0


def test_jwt_is_required_exactly_where_the_contract_says():
    for manager in managers(bootstrap()):
        jwt = jwt_pb2.JwtAuthentication()
        assert next(f for f in manager.http_filters if f.name.endswith("jwt_authn")).typed_config.Unpack(jwt)
        rules = {r.match.path: r.requires for r in jwt.rules}
        for service, methods in contract_methods().items():
            for m in methods:
                path = f"/{service}/{m}"
                required = rules[path].provider_name == "petplatform"
                assert required == (method_access(path) != access_pb2.ACCESS_PUBLIC), path


def test_server_streams_are_not_cut_by_the_unary_timeout():
    fds = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "build" / "descriptors.binpb").read_bytes())
    streams = {f"/{f.package}.{s.name}/{m.name}" for f in fds.file if f.package.startswith("petplatform.")
               for s in f.service for m in s.method if m.server_streaming and not m.client_streaming}
    assert streams, "the contracts have a server stream (WatchPets)"
    for manager in managers(bootstrap()):
        routes = manager.route_config.virtual_hosts[0].routes
        for path in streams:
            # The first route that matches is the one Envoy uses: it must be the stream's own.
            route = next(r for r in routes
                         if r.match.path == path or (r.match.prefix and path.startswith(r.match.prefix)))
            assert route.match.path == path and route.route.timeout.ToSeconds() == 0
            assert route.route.max_stream_duration.HasField("grpc_timeout_header_max")
            assert route.route.rate_limits, "streams count against the rate limit too"


def test_rate_limit_counts_the_user_else_the_address_and_clients_cannot_pose_as_users():
    user_header = envoy_config.USER_HEADER
    limits = yaml.safe_load((ROOT / "envoy" / "ratelimit.yaml").read_text())
    keys = {(d["key"], d.get("value")): d for d in limits["descriptors"]}
    assert keys[("user", None)]["rate_limit"]["requests_per_unit"] == 100
    assert keys[("anonymous", "yes")]["descriptors"][0]["key"] == "remote_address"
    for manager in managers(bootstrap()):
        filters = [f.name for f in manager.http_filters]
        strip = header_mutation_pb2.HeaderMutation()
        assert manager.http_filters[filters.index("envoy.filters.http.header_mutation")].typed_config.Unpack(strip)
        removed = [m.remove for m in strip.mutations.request_mutations if m.remove]
        assert removed == [user_header, CLIENT_ADDRESS_HEADER, EDGE_KEY_HEADER]
        set_after = {m.append.header.key: m.append.header.value for m in strip.mutations.request_mutations
                     if m.HasField("append")}
        assert set_after == {CLIENT_ADDRESS_HEADER: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                             EDGE_KEY_HEADER: "%ENVIRONMENT(PETPLATFORM_EDGE_KEY)%"}, \
            "the services' one client-address rule: Envoy vouches for the address it saw"
        assert manager.request_headers_timeout.seconds == 10
        assert manager.common_http_protocol_options.idle_timeout.seconds == 75
        assert filters.index("envoy.filters.http.header_mutation") < filters.index("envoy.filters.http.jwt_authn"), \
            "a header the client sends is gone before the verified one is set"
        jwt = jwt_pb2.JwtAuthentication()
        assert manager.http_filters[filters.index("envoy.filters.http.jwt_authn")].typed_config.Unpack(jwt)
        assert [(c.header_name, c.claim_name) for c in jwt.providers["petplatform"].claim_to_headers] == [
            (user_header, "sub")]
        assert user_header in manager.route_config.virtual_hosts[0].request_headers_to_remove
        for route in manager.route_config.virtual_hosts[0].routes:
            if not route.HasField("route"):
                continue
            user, anonymous = route.route.rate_limits
            assert user.actions[0].request_headers.descriptor_key == "user"
            match, address = anonymous.actions
            assert not match.header_value_match.expect_match.value and match.header_value_match.headers[0].name == \
                user_header and address.HasField("remote_address"), "the address counts only without a user"


def test_pages_go_to_the_python_edge_untranscoded():
    b = bootstrap()
    browser_listener = managers(b)[0]
    routes = {r.match.prefix: r for r in browser_listener.route_config.virtual_hosts[0].routes if r.match.prefix}
    for prefix in PAGE_PREFIXES:
        route = routes[prefix]
        assert route.route.cluster == envoy_config.PAGES_CLUSTER and route.route.rate_limits
        disabled = route_pb2.FilterConfig()
        assert route.typed_per_filter_config["envoy.filters.http.grpc_json_transcoder"].Unpack(disabled)
        assert disabled.disabled
    assert envoy_config.PAGES_CLUSTER in {c.name for c in b.static_resources.clusters}


def test_the_pages_keep_their_own_content_security_policy():
    """The API's CSP is added where a response has none; the Python edge's pages (their inline styles, their
    forms) keep theirs. The headers the web app needs across origins (gRPC-Web's status and its details, the
    rate limit's) are exposed to it, and photos keep the edge's cross-origin resource policy (not overwritten)."""
    host = managers(bootstrap())[0].route_config.virtual_hosts[0]
    added = {h.header.key: h.append_action for h in host.response_headers_to_add}
    assert added["content-security-policy"] == core_pb2.HeaderValueOption.ADD_IF_ABSENT
    assert added["x-frame-options"] == core_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert "cross-origin-resource-policy" not in added
    cors = cors_pb2.CorsPolicy()
    assert host.typed_per_filter_config["envoy.filters.http.cors"].Unpack(cors)
    exposed = {h.strip() for h in cors.expose_headers.split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed
    allowed = {h.strip() for h in cors.allow_headers.split(",")}
    assert {"authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"} <= allowed
