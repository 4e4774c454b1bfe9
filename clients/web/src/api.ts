// The edge over gRPC-Web (Connect's transport), with the clients the screens use and the signed-in session.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { PetService } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { MatchingService } from "@petplatform/proto/petplatform/matching/v1/matching_pb";
import { ChatService } from "@petplatform/proto/petplatform/chat/v1/chat_pb";
import { NotificationService } from "@petplatform/proto/petplatform/notification/v1/notification_pb";
import { UserService } from "@petplatform/proto/petplatform/user/v1/user_pb";
import { MarketplaceService } from "@petplatform/proto/petplatform/marketplace/v1/marketplace_pb";
import { PaymentService } from "@petplatform/proto/petplatform/payment/v1/payment_pb";
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

// Refreshed this long before it expires: a call in flight should not carry a token that dies on the way.
const EXPIRY_MARGIN_MS = 30_000;

const SESSION_KEY = "petplatform.session";

// The session lives in sessionStorage: it ends with the tab, and other sites' scripts cannot read it.
export function loadSession(): Session | null {
  const raw = sessionStorage.getItem(SESSION_KEY);
  return raw ? (JSON.parse(raw) as Session) : null;
}

export function saveSession(session: Session | null): void {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
  dispatchEvent(new Event(SESSION_EVENT));
}

/** Fired on window whenever the stored session changes (signed in, refreshed, ended). */
export const SESSION_EVENT = "app:session";

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

export interface Api {
  edgeUrl: string;
  providers: Provider[];
  auth: Client<typeof AuthService>;
  pets: Client<typeof PetService>;
  matching: Client<typeof MatchingService>;
  chat: Client<typeof ChatService>;
  notifications: Client<typeof NotificationService>;
  users: Client<typeof UserService>;
  market: Client<typeof MarketplaceService>;
  payments: Client<typeof PaymentService>;
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

function reasonOf(error: unknown): string {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

export function makeApi({ edgeUrl: baseUrl, providers }: Config): Api {
  // Refresh tokens rotate, and using one twice ends the session: one refresh at a time, shared by the calls
  // that found their access token expired together.
  let refreshing: Promise<Session | null> | null = null;
  const refresh = (stale: Session): Promise<Session | null> => {
    refreshing ??= auth.refreshToken({ refreshToken: stale.refreshToken }).then(
      (r) => sessionOf(r, stale.email),
      () => null,
    ).then((fresh) => {
      saveSession(fresh); // null: the session is over, the app shows "Sign in"
      refreshing = null;
      return fresh;
    });
    return refreshing;
  };
  const bearer: Interceptor = (next) => async (request) => {
    let session = loadSession();
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
        if (reasonOf(error) !== "TOKEN_MISSING") saveSession(null); // revoked or not ours: sign in again
        throw error;
      }
      const current = loadSession();
      const stale = session;
      const fresh = current && current.accessToken !== stale.accessToken ? current : await refresh(stale);
      if (!fresh) throw error;
      request.header.set("authorization", `Bearer ${fresh.accessToken}`);
      return next(request);
    }
  };
  // Each call has a deadline (grpc-timeout): a stalled edge shows an error instead of a spinner forever.
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer], defaultTimeoutMs: 15000 });
  const auth = createClient(AuthService, transport);
  return {
    edgeUrl: baseUrl, providers, auth, pets: createClient(PetService, transport),
    matching: createClient(MatchingService, transport), chat: createClient(ChatService, transport),
    notifications: createClient(NotificationService, transport), users: createClient(UserService, transport),
    market: createClient(MarketplaceService, transport), payments: createClient(PaymentService, transport),
  };
}

/** A photo's address as the browser loads it: the edge gives absolute URLs, a relative one is the edge's. */
export function photoUrl(api: Api, uri: string): string {
  return new URL(uri, api.edgeUrl + "/").toString();
}

/** The signed-in person, `users/{id}`, from the access token's subject (the app only reads it, the edge checks
 * the signature). */
export function userOf(session: Session): string {
  const payload = session.accessToken.split(".")[1] ?? "";
  try {
    const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))) as { sub?: string };
    return claims.sub ? `users/${claims.sub}` : "";
  } catch {
    return "";
  }
}
