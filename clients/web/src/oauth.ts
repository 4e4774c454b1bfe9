// Signing in with a provider from the browser: the authorization-code flow with PKCE (RFC 7636), a state
// bound to this tab and a nonce the ID token must carry. The app sends the code and its verifier to
// AuthService.SignInWithProvider, which exchanges them with the provider (client secrets stay there).
import type { Provider } from "./api";

const FLOW_KEY = "petplatform.oauth";

interface Flow {
  provider: string;
  state: string;
  nonce: string;
  verifier: string;
  redirectUri: string;
}

function random(bytes: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64url(data: Uint8Array): string {
  return btoa(String.fromCharCode(...data)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export const PROVIDER_NAMES: Record<string, string> = { demo: "the demo provider", google: "Google", line: "LINE" };

export async function startSignIn(provider: Provider): Promise<void> {
  const flow: Flow = { provider: provider.id, state: random(16), nonce: random(16), verifier: random(32),
                       redirectUri: `${location.origin}/signin/callback` };
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(flow.verifier));
  sessionStorage.setItem(FLOW_KEY, JSON.stringify(flow));
  const query = new URLSearchParams({
    response_type: "code", client_id: provider.clientId, redirect_uri: flow.redirectUri, scope: provider.scope,
    state: flow.state, nonce: flow.nonce, code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  });
  location.assign(`${provider.authorizationEndpoint}?${query}`);
}

/** The provider's answer on /signin/callback, checked against the flow this tab started (used once). */
export function finishSignIn(search: string):
    { provider: string; code: string; verifier: string; redirectUri: string; nonce: string } | string {
  const raw = sessionStorage.getItem(FLOW_KEY);
  sessionStorage.removeItem(FLOW_KEY);
  const params = new URLSearchParams(search);
  if (params.get("error")) return "The provider did not sign you in. Try again, or use your password.";
  const flow = raw ? (JSON.parse(raw) as Flow) : null;
  const code = params.get("code");
  if (!flow || !code || params.get("state") !== flow.state) {
    return "This sign-in was not started here, or took too long. Start it again.";
  }
  return { provider: flow.provider, code, verifier: flow.verifier, redirectUri: flow.redirectUri, nonce: flow.nonce };
}
