// Two-factor authentication: enrolling an authenticator app from a QR code (StartMfaEnrollment's PNG of the
// otpauth URI, drawn by the auth service so the app needs no QR library), confirming it with a code, and the
// recovery codes shown that once; turning it off again.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { Field, ProblemBanner } from "../Form";

interface Enrolment {
  secret: string;
  uri: string;
  qr: string; // an object URL of the PNG
}

export function Security({ api, session }: { api: Api; session: Session }) {
  const [enabled, setEnabled] = useState<boolean | null>(null);
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [codes, setCodes] = useState<string[]>([]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");

  const load = useCallback(async () => {
    try {
      setEnabled((await api.auth.getAccount({ name: userOf(session) })).account?.mfaEnabled ?? false);
    } catch (e) {
      setProblem(describe(e));
    }
  }, [api, session]);
  useEffect(() => void load(), [load]);
  useEffect(() => () => { if (enrolment) URL.revokeObjectURL(enrolment.qr); }, [enrolment]);

  const start = async () => {
    setProblem(null);
    setStatus("");
    try {
      const reply = await api.auth.startMfaEnrollment({});
      const qr = URL.createObjectURL(new Blob([reply.qrCodePng as Uint8Array<ArrayBuffer>], { type: "image/png" }));
      setEnrolment({ secret: reply.secret, uri: reply.otpauthUri, qr });
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const confirm = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const code = String(new FormData(event.currentTarget).get("code") ?? "").trim();
    setProblem(null);
    try {
      const reply = await api.auth.confirmMfaEnrollment({ code });
      setCodes(reply.recoveryCodes);
      setEnrolment(null);
      setEnabled(true);
      setStatus("Two-factor authentication is on. Each sign-in now asks for a code from your app.");
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const disable = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setProblem(null);
    try {
      await api.auth.disableMfa({ password: String(form.get("password") ?? ""), code: String(form.get("code") ?? "").trim() });
      setEnabled(false);
      setCodes([]);
      setStatus("Two-factor authentication is off.");
    } catch (e) {
      setProblem(describe(e));
    }
  };

  return (
    <section>
      <h1 tabIndex={-1}>Two-factor authentication</h1>
      <p role="status" className="status">{status}</p>
      <ProblemBanner problem={problem} />
      {enabled === null ? <p aria-live="polite">Loading…</p> : codes.length > 0 ? (
        <div className="narrow">
          <h2>Your recovery codes</h2>
          <p>Keep these somewhere safe: each lets you sign in once without your phone. They are shown only now.</p>
          <ul className="codes" aria-label="Recovery codes">{codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
          <button type="button" className="secondary" onClick={() => setCodes([])}>I have saved them</button>
        </div>
      ) : enrolment ? (
        <div className="enrol">
          <ol>
            <li>Scan this QR code with an authenticator app (for example Google Authenticator or 1Password).
              <img className="qr" src={enrolment.qr} width={200} height={200}
                   alt="QR code to add Pet Platform to your authenticator app" />
              <p>Cannot scan it? Enter this key by hand: <code aria-label="Secret key">{enrolment.secret}</code></p>
            </li>
            <li>Enter the six-digit code the app shows.
              <form className="narrow" onSubmit={(e) => void confirm(e)}>
                <Field label="Code" field="code" problem={problem} inputMode="numeric" autoComplete="one-time-code"
                       pattern="[0-9]{6}" maxLength={6} required />
                <button type="submit">Turn on</button>
              </form>
            </li>
          </ol>
        </div>
      ) : enabled ? (
        <form className="narrow" onSubmit={(e) => void disable(e)}>
          <p>Two-factor authentication is <strong>on</strong>. To turn it off, confirm it is you.</p>
          <Field label="Password" field="password" problem={problem} type="password" autoComplete="current-password"
                 hint="Leave empty if you sign in only with a provider." />
          <Field label="Code" field="code" problem={problem} inputMode="numeric" autoComplete="one-time-code" required />
          <button type="submit" className="secondary">Turn off</button>
        </form>
      ) : (
        <div>
          <p>Two-factor authentication is <strong>off</strong>. With it on, signing in also needs a code from an app
            on your phone, so a stolen password is not enough.</p>
          <button type="button" onClick={() => void start()}>Set up two-factor authentication</button>
        </div>
      )}
    </section>
  );
}
