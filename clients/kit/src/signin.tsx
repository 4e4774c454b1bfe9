// Signing in: the password step, the second-factor step an account with one is asked for, and the busy and
// error state around each call. The web app and the admin panel differ only in their words and where they go.
import { useState, type FormEvent, type ReactNode } from "react";
import type { Client } from "@connectrpc/connect";
import { AuthService, ClientPlatform } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { describe, type Problem } from "./errors";
import { Field, ProblemBanner } from "./Form";
import { navigate } from "./router";
import { sessionOf, type Session } from "./session";

type Tokens = { accessToken: string; refreshToken: string; expiresIn: number; mfaChallenge?: string };

/** onSignedIn gets the new session; home is where the app goes then. */
export function useSignIn({ auth, onSignedIn, home, busyAtFirst = false }: {
  auth: Client<typeof AuthService>; onSignedIn: (s: Session) => void; home: string; busyAtFirst?: boolean;
}) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(busyAtFirst);
  const [challenge, setChallenge] = useState<{ token: string; email: string } | null>(null);

  /** Runs one step: busy while it runs, its error as a Problem. */
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

  /** What an authentication step returned: signed in, or on to the code step. */
  function finish(tokens: Tokens, email: string) {
    if (tokens.mfaChallenge) {
      setChallenge({ token: tokens.mfaChallenge, email });
      return;
    }
    onSignedIn(sessionOf(tokens, email));
    navigate(home, true);
  }

  const signInWithPassword = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email"));
    return run(async () => finish(await auth.login({ email, password: String(form.get("password")),
                                                     platform: ClientPlatform.WEB }), email));
  };

  const verifyCode = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const { token, email } = challenge!;
    return run(async () => finish(await auth.verifyMfa({ mfaChallenge: token, code: String(form.get("code")).trim() }),
                                  email));
  };

  return { problem, setProblem, busy, setBusy, challenge, run, finish, signInWithPassword, verifyCode,
           restart: () => setChallenge(null) };
}

export type SignInFlow = ReturnType<typeof useSignIn>;

/** The code step: `intro` says whose code to enter. */
export function CodeStep({ flow, intro }: { flow: SignInFlow; intro: ReactNode }) {
  return (
    <section className="narrow">
      <h1 tabIndex={-1}>Enter your code</h1>
      <p>{intro}</p>
      <ProblemBanner problem={flow.problem} />
      <form onSubmit={flow.verifyCode} noValidate>
        <Field label="Code" field="code" problem={flow.problem} autoComplete="one-time-code" inputMode="text"
               autoFocus required />
        <button type="submit" disabled={flow.busy}>{flow.busy ? "Checking…" : "Verify"}</button>
      </form>
      <p><button type="button" className="link" onClick={flow.restart}>Start again</button></p>
    </section>
  );
}

/** The password step's fields and button. */
export function PasswordForm({ flow }: { flow: SignInFlow }) {
  return (
    <form onSubmit={flow.signInWithPassword} noValidate>
      <Field label="Email" field="email" problem={flow.problem} type="email" autoComplete="username" required />
      <Field label="Password" field="password" problem={flow.problem} type="password"
             autoComplete="current-password" required />
      <button type="submit" disabled={flow.busy}>{flow.busy ? "Signing in…" : "Sign in"}</button>
    </form>
  );
}
