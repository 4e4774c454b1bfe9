import { useState, type FormEvent } from "react";
import { ClientPlatform } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { sessionOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { Field, ProblemBanner } from "../Form";
import { follow, navigate } from "../router";

export function SignUp({ api, onSignedIn }: { api: Api; onSignedIn: (s: Session) => void }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email"));
    const password = String(form.get("password"));
    setBusy(true);
    setProblem(null);
    try {
      await api.auth.register({ email, password, displayName: String(form.get("display_name")) });
      const tokens = await api.auth.login({ email, password, platform: ClientPlatform.WEB });
      onSignedIn(sessionOf(tokens, email));
      navigate("/");
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="narrow">
      <h1 tabIndex={-1}>Create your account</h1>
      <p>Already have one? <a href="/signin" onClick={follow}>Sign in</a>.</p>
      <ProblemBanner problem={problem} />
      <form onSubmit={submit} noValidate>
        <Field label="Your name" field="display_name" problem={problem} autoComplete="name" required />
        <Field label="Email" field="email" problem={problem} type="email" autoComplete="email" required />
        <Field label="Password" field="password" problem={problem} type="password" autoComplete="new-password"
               hint="At least 8 characters. A few words you will remember work well." required />
        <button type="submit" disabled={busy}>{busy ? "Creating your account…" : "Create account"}</button>
      </form>
      <p className="hint">We will email you a link to confirm your address.</p>
    </section>
  );
}
