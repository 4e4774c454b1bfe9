// The edge over gRPC-Web (Connect's transport), with the clients the screens use and the signed-in session.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { PetService } from "@petplatform/proto/petplatform/pet/v1/pet_pb";

export interface Session {
  accessToken: string;
  refreshToken: string;
  email: string;
}

const SESSION_KEY = "petplatform.session";

// The session lives in sessionStorage: it ends with the tab, and other sites' scripts cannot read it.
export function loadSession(): Session | null {
  const raw = sessionStorage.getItem(SESSION_KEY);
  return raw ? (JSON.parse(raw) as Session) : null;
}

export function saveSession(session: Session | null): void {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
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

export interface Api {
  edgeUrl: string;
  providers: Provider[];
  auth: Client<typeof AuthService>;
  pets: Client<typeof PetService>;
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

export function makeApi({ edgeUrl: baseUrl, providers }: Config): Api {
  const bearer: Interceptor = (next) => async (request) => {
    const session = loadSession();
    if (session && !request.header.has("authorization")) {
      request.header.set("authorization", `Bearer ${session.accessToken}`);
    }
    return next(request);
  };
  // Each call has a deadline (grpc-timeout): a stalled edge shows an error instead of a spinner forever.
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer], defaultTimeoutMs: 15000 });
  return { edgeUrl: baseUrl, providers, auth: createClient(AuthService, transport),
           pets: createClient(PetService, transport) };
}

/** A photo's address as the browser loads it: the edge gives absolute URLs, a relative one is the edge's. */
export function photoUrl(api: Api, uri: string): string {
  return new URL(uri, api.edgeUrl + "/").toString();
}
