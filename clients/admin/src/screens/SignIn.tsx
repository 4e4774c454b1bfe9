// Staff sign in with their password, then the code of their authenticator app: every staff role needs the
// second factor to act as staff.
import { ProblemBanner } from "@petplatform/kit/form";
import { CodeStep, PasswordForm, useSignIn } from "@petplatform/kit/signin";
import type { Session } from "@petplatform/kit/session";
import type { Api } from "../api";

export function SignIn({ api, onSignedIn }: { api: Api; onSignedIn: (s: Session) => void }) {
  // Without a second factor the panel signs in too, and says what is missing (staff need one).
  const flow = useSignIn({ auth: api.auth, onSignedIn, home: "/admin/" });
  if (flow.challenge) {
    return <CodeStep flow={flow} intro={<>Staff sign in with a second factor. Enter the 6-digit code from your
      authenticator app for <strong>{flow.challenge.email}</strong>, or one of your recovery codes.</>} />;
  }
  return (
    <section className="narrow">
      <h1 tabIndex={-1}>Staff sign in</h1>
      <p>For moderators, support and admins of Pet Platform. You will be asked for the code of your authenticator app.</p>
      <ProblemBanner problem={flow.problem} />
      <PasswordForm flow={flow} />
    </section>
  );
}
