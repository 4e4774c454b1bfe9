"""Identity providers as the edge and the auth service both see them: each one's documented endpoints
and issuer, with the deployment's client ids and any overrides (PETPLATFORM_OAUTH_PROVIDERS), and the
local OpenID provider as `demo` where PETPLATFORM_DEV_OIDC serves it."""
from __future__ import annotations

import dataclasses

from mesh.config import OAuthProvider, Settings

DEV_OIDC_PATH = "/dev-oidc"  # where the edge serves the local provider
DEMO_CLIENT_ID = "petplatform-demo"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProviderEndpoints:
    issuers: tuple[str, ...]
    jwks_uri: str
    authorization_endpoint: str
    token_endpoint: str
    scope: str
    form_post: bool = False  # Apple answers the authorization with a POST when asked for name or email


# What each provider documents (OpenID discovery documents of Google, Apple and LINE).
DEFAULTS = {
    "google": ProviderEndpoints(
        issuers=("https://accounts.google.com", "accounts.google.com"),
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token", scope="openid email profile"),
    "apple": ProviderEndpoints(
        issuers=("https://appleid.apple.com",), jwks_uri="https://appleid.apple.com/auth/keys",
        authorization_endpoint="https://appleid.apple.com/auth/authorize",
        token_endpoint="https://appleid.apple.com/auth/token", scope="name email", form_post=True),
    "line": ProviderEndpoints(
        issuers=("https://access.line.me",), jwks_uri="https://api.line.me/oauth2/v2.1/certs",
        authorization_endpoint="https://access.line.me/oauth2/v2.1/authorize",
        token_endpoint="https://api.line.me/oauth2/v2.1/token", scope="openid profile email"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProviderSettings:
    name: str
    endpoints: ProviderEndpoints
    config: OAuthProvider


def dev_oidc_issuer(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + DEV_OIDC_PATH


def providers(settings: Settings) -> dict[str, ProviderSettings]:
    """The providers this deployment offers, by name."""
    out: dict[str, ProviderSettings] = {}
    for name, config in settings.oauth_providers.items():
        d = DEFAULTS[name]
        out[name] = ProviderSettings(name=name, config=config, endpoints=dataclasses.replace(
            d, issuers=(config.issuer,) if config.issuer else d.issuers, jwks_uri=config.jwks_uri or d.jwks_uri,
            authorization_endpoint=config.authorization_endpoint or d.authorization_endpoint,
            token_endpoint=config.token_endpoint or d.token_endpoint))
    if settings.dev_oidc:
        issuer = dev_oidc_issuer(settings)
        out["demo"] = ProviderSettings(
            name="demo", config=OAuthProvider(client_ids={p: DEMO_CLIENT_ID for p in ("web", "ios", "android")}),
            endpoints=ProviderEndpoints(issuers=(issuer,), jwks_uri=f"{issuer}/jwks",
                                        authorization_endpoint=f"{issuer}/authorize",
                                        token_endpoint=f"{issuer}/token", scope="openid email profile"))
    return out
