// The signed-in session and the gRPC-Web transport (Connect's) that carries its access token, refreshing it
// before it expires. Each app keeps its session under its own storage key: the web app and the admin panel
// share an origin, and signing in to one must not sign in to the other.
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "@petplatform/proto/google/rpc/error_details_pb";

export interface Session {
  accessToken: string;
  refreshToken: string;
  email: string;
  /** When the access token expires, by this browser's clock (from expires_in, so a skewed clock does not matter). */
  expiresAt: number;
}

/** A session from what Login, VerifyMfa, SignInWithProvider and RefreshToken answer. */
export function sessionOf(tokens: { accessToken: string; refreshToken: string; expiresIn: number }, email: string): Session {
  return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, email,
           expiresAt: Date.now() + tokens.expiresIn * 1000 };
}

/** Fired on window whenever the stored session changes (signed in, refreshed, ended). */
export const SESSION_EVENT = "app:session";

/** Where an app keeps its session: sessionStorage, so it ends with the tab and other sites' scripts cannot read it. */
export class SessionStore {
  constructor(private readonly key: string) {}

  load(): Session | null {
    const raw = sessionStorage.getItem(this.key);
    return raw ? (JSON.parse(raw) as Session) : null;
  }

  save(session: Session | null): void {
    if (session) sessionStorage.setItem(this.key, JSON.stringify(session));
    else sessionStorage.removeItem(this.key);
    dispatchEvent(new Event(SESSION_EVENT));
  }
}

/** A sign-in provider the deployment offers to the web (from /config.json). */
export interface Provider {
  id: string;
  authorizationEndpoint: string;
  clientId: string;
  scope: string;
}

export interface Config {
  edgeUrl: string;
  providers: Provider[];
}

/** Where the edge is and which providers it offers: the platform's web server says (/config.json); `vite dev`
 * has no such file, so the edge's default port on this host and no providers. */
export async function loadConfig(): Promise<Config> {
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    if (response.ok) return (await response.json()) as Config;
  } catch {
    // fall through to the default
  }
  return { edgeUrl: `${location.protocol}//${location.hostname}:3000`, providers: [] };
}

// Refreshed this long before it expires: a call in flight should not carry a token that dies on the way.
const EXPIRY_MARGIN_MS = 30_000;

function reasonOf(error: unknown): string {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/** The edge over gRPC-Web with the store's session as the bearer. `refresh` is auth's RefreshToken, passed in
 * (its client is built on this very transport). */
export function sessionTransport({ baseUrl, store, refreshToken }: {
  baseUrl: string;
  store: SessionStore;
  refreshToken: (token: string) => Promise<{ accessToken: string; refreshToken: string; expiresIn: number }>;
}): Transport {
  // Refresh tokens rotate, and using one twice ends the session: one refresh at a time, shared by the calls
  // that found their access token expired together.
  let refreshing: Promise<Session | null> | null = null;
  const refresh = (stale: Session): Promise<Session | null> => {
    refreshing ??= refreshToken(stale.refreshToken).then(
      (r) => sessionOf(r, stale.email),
      () => null,
    ).then((fresh) => {
      store.save(fresh); // null: the session is over, the app shows "Sign in"
      refreshing = null;
      return fresh;
    });
    return refreshing;
  };
  const bearer: Interceptor = (next) => async (request) => {
    let session = store.load();
    if (!session || request.header.has("authorization") || request.method.name === "RefreshToken") {
      return next(request);
    }
    // Before it expires, not after: public methods take an expired token as none, and would answer as if
    // the person had signed out.
    if (session.expiresAt - EXPIRY_MARGIN_MS < Date.now()) {
      session = await refresh(session);
      if (!session) return next(request);
    }
    request.header.set("authorization", `Bearer ${session.accessToken}`);
    try {
      return await next(request);
    } catch (error) {
      if (ConnectError.from(error).code !== Code.Unauthenticated) throw error;
      if (reasonOf(error) !== "TOKEN_EXPIRED") {
        if (reasonOf(error) !== "TOKEN_MISSING") store.save(null); // revoked or not ours: sign in again
        throw error;
      }
      const current = store.load();
      const stale = session;
      const fresh = current && current.accessToken !== stale.accessToken ? current : await refresh(stale);
      if (!fresh) throw error;
      request.header.set("authorization", `Bearer ${fresh.accessToken}`);
      return next(request);
    }
  };
  // Each call has a deadline (grpc-timeout): a stalled edge shows an error instead of a spinner forever.
  return createGrpcWebTransport({ baseUrl, interceptors: [bearer], defaultTimeoutMs: 15000 });
}

/** The access token's claims the apps read (the edge checks the signature; the apps only shape the screens). */
export interface Claims {
  /** The account's id. */
  sub?: string;
  /** Its role: user, support, moderator or admin. */
  role?: string;
  /** How the session signed in (RFC 8176): `mfa` once a second factor passed, which staff need to act as staff. */
  amr?: string[];
}

export function claimsOf(session: Session): Claims {
  const payload = session.accessToken.split(".")[1] ?? "";
  try {
    return JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))) as Claims;
  } catch {
    return {};
  }
}

/** The signed-in person, `users/{id}`, from the access token's subject. */
export function userOf(session: Session): string {
  const sub = claimsOf(session).sub;
  return sub ? `users/${sub}` : "";
}
