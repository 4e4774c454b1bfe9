import { useEffect, useRef } from "react";
import { ClientPlatform } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { CodeStep, PasswordForm, useSignIn } from "@petplatform/kit/signin";
import type { Api, Session } from "../api";
import { ProblemBanner } from "../Form";
import { finishSignIn, PROVIDER_NAMES, startSignIn } from "../oauth";
import { follow } from "../router";

/** callback: the provider sent the browser back here (/signin/callback?code=&state=). */
export function SignIn({ api, onSignedIn, callback }: {
  api: Api; onSignedIn: (s: Session) => void; callback: boolean;
}) {
  // With two-factor authentication on, the password (or the provider) is only the first step.
  const flow = useSignIn({ auth: api.auth, onSignedIn, home: "/", busyAtFirst: callback });
  const exchanged = useRef(false);

  useEffect(() => {
    if (!callback || exchanged.current) return; // the code is single use
    exchanged.current = true;
    const answer = finishSignIn(location.search);
    history.replaceState(null, "", "/signin"); // the code leaves the address bar and history
    if (typeof answer === "string") {
      flow.setProblem({ message: answer, fields: {} });
      flow.setBusy(false);
      return;
    }
    void flow.run(async () => {
      const reply = await api.auth.signInWithProvider({
        provider: answer.provider, authorizationCode: answer.code, codeVerifier: answer.verifier,
        redirectUri: answer.redirectUri, nonce: answer.nonce, platform: ClientPlatform.WEB });
      flow.finish(reply, reply.account?.email ?? "");
    });
  }, [callback]);

  if (flow.challenge) {
    const intro = "Open your authenticator app and enter the 6-digit code for Pet Platform, or one of your recovery codes.";
    return <CodeStep flow={flow} intro={intro} />;
  }
  return (
    <section className="narrow">
      <h1 tabIndex={-1}>Sign in</h1>
      <p>New here? <a href="/signup" onClick={follow}>Create an account</a>.</p>
      <ProblemBanner problem={flow.problem} />
      <PasswordForm flow={flow} />
      {api.providers.length > 0 && (
        <div className="providers">
          <h2>Or</h2>
          {api.providers.map((p) => (
            <button key={p.id} type="button" className="secondary" disabled={flow.busy}
                    onClick={() => void flow.run(() => startSignIn(p))}>
              Continue with {PROVIDER_NAMES[p.id] ?? p.id}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}
