// Staff sign in with their password, then the code of their authenticator app: every staff role needs the
// second factor to act as staff.
import { useState, type FormEvent } from "react";
import { ClientPlatform } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { describe, type Problem } from "@petplatform/kit/errors";
import { Field, ProblemBanner } from "@petplatform/kit/form";
import { navigate } from "@petplatform/kit/router";
import { sessionOf, type Session } from "@petplatform/kit/session";
import type { Api } from "../api";

export function SignIn({ api, onSignedIn }: { api: Api; onSignedIn: (s: Session) => void }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
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

  const signIn = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email"));
    return run(async () => {
      const tokens = await api.auth.login({ email, password: String(form.get("password")), platform: ClientPlatform.WEB });
      if (tokens.mfaChallenge) {
        setChallenge({ token: tokens.mfaChallenge, email });
        return;
      }
      // No second factor: signed in, but the panel will say what is missing (staff need one).
      onSignedIn(sessionOf(tokens, email));
      navigate("/admin/", true);
    });
  };

  const verify = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    return run(async () => {
      const tokens = await api.auth.verifyMfa({ mfaChallenge: challenge!.token, code: String(form.get("code")).trim() });
      onSignedIn(sessionOf(tokens, challenge!.email));
      navigate("/admin/", true);
    });
  };

  if (challenge) {
    return (
      <section className="narrow">
        <h1 tabIndex={-1}>Enter your code</h1>
        <p>Staff sign in with a second factor. Enter the 6-digit code from your authenticator app for{" "}
          <strong>{challenge.email}</strong>, or one of your recovery codes.</p>
        <ProblemBanner problem={problem} />
        <form onSubmit={verify} noValidate>
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
      <h1 tabIndex={-1}>Staff sign in</h1>
      <p>For moderators, support and admins of Pet Platform. You will be asked for the code of your authenticator app.</p>
      <ProblemBanner problem={problem} />
      <form onSubmit={signIn} noValidate>
        <Field label="Email" field="email" problem={problem} type="email" autoComplete="username" required />
        <Field label="Password" field="password" problem={problem} type="password" autoComplete="current-password"
               required />
        <button type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
    </section>
  );
}
