import { useEffect, useRef, useState, type FormEvent } from "react";
import { ClientPlatform } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { sessionOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { Field, ProblemBanner } from "../Form";
import { finishSignIn, PROVIDER_NAMES, startSignIn } from "../oauth";
import { follow, navigate } from "../router";

/** callback: the provider sent the browser back here (/signin/callback?code=&state=). */
export function SignIn({ api, onSignedIn, callback }: {
  api: Api; onSignedIn: (s: Session) => void; callback: boolean;
}) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(callback);
  const exchanged = useRef(false);
  // With two-factor authentication on, the password is only the first step.
  const [challenge, setChallenge] = useState<{ token: string; email: string } | null>(null);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setProblem(null);
    try {
      await action();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  }

  const signInWithPassword = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email"));
    return run(async () => {
      const tokens = await api.auth.login({ email, password: String(form.get("password")),
                                            platform: ClientPlatform.WEB });
      if (tokens.mfaChallenge) {
        setChallenge({ token: tokens.mfaChallenge, email });
        return;
      }
      onSignedIn(sessionOf(tokens, email));
      navigate("/");
    });
  };

  useEffect(() => {
    if (!callback || exchanged.current) return; // the code is single use
    exchanged.current = true;
    const answer = finishSignIn(location.search);
    history.replaceState(null, "", "/signin"); // the code leaves the address bar and history
    if (typeof answer === "string") {
      setProblem({ message: answer, fields: {} });
      setBusy(false);
      return;
    }
    void run(async () => {
      const reply = await api.auth.signInWithProvider({
        provider: answer.provider, authorizationCode: answer.code, codeVerifier: answer.verifier,
        redirectUri: answer.redirectUri, nonce: answer.nonce, platform: ClientPlatform.WEB });
      const email = reply.account?.email ?? "";
      if (reply.mfaChallenge) {
        setChallenge({ token: reply.mfaChallenge, email });
        return;
      }
      onSignedIn(sessionOf(reply, email));
      navigate("/");
    });
  }, [callback]);

  const verifyCode = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    return run(async () => {
      const tokens = await api.auth.verifyMfa({ mfaChallenge: challenge!.token, code: String(form.get("code")).trim() });
      onSignedIn(sessionOf(tokens, challenge!.email));
      navigate("/");
    });
  };

  if (challenge) {
    return (
      <section className="narrow">
        <h1 tabIndex={-1}>Enter your code</h1>
        <p>Open your authenticator app and enter the 6-digit code for Pet Platform, or one of your recovery codes.</p>
        <ProblemBanner problem={problem} />
        <form onSubmit={verifyCode} noValidate>
          <Field label="Code" field="code" problem={problem} autoComplete="one-time-code" inputMode="text"
                 autoFocus required />
          <button type="submit" disabled={busy}>{busy ? "Checking…" : "Verify"}</button>
        </form>
        <p><button type="button" className="link" onClick={() => setChallenge(null)}>Start again</button></p>
      </section>
    );
  }

  return (
    <section className="narrow">
      <h1 tabIndex={-1}>Sign in</h1>
      <p>New here? <a href="/signup" onClick={follow}>Create an account</a>.</p>
      <ProblemBanner problem={problem} />
      <form onSubmit={signInWithPassword} noValidate>
        <Field label="Email" field="email" problem={problem} type="email" autoComplete="username" required />
        <Field label="Password" field="password" problem={problem} type="password" autoComplete="current-password"
               required />
        <button type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
      {api.providers.length > 0 && (
        <div className="providers">
          <h2>Or</h2>
          {api.providers.map((p) => (
            <button key={p.id} type="button" className="secondary" disabled={busy}
                    onClick={() => void run(() => startSignIn(p))}>
              Continue with {PROVIDER_NAMES[p.id] ?? p.id}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}
