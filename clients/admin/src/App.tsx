import { useEffect, useRef, useState, type ReactNode } from "react";
import { SESSION_EVENT, type Session } from "@petplatform/kit/session";
import { follow, navigate, usePath } from "@petplatform/kit/router";
import { loadSession, powersOf, saveSession, type Api, type Powers } from "./api";
import { Audit } from "./screens/Audit";
import { CasePage } from "./screens/CasePage";
import { Dashboard } from "./screens/Dashboard";
import { Queue } from "./screens/Queue";
import { SignIn } from "./screens/SignIn";
import { UserPage, Users } from "./screens/Users";

// The panel's screens: path, name in the navigation, and who may open them (the contract's access levels).
const SCREENS: { path: string; label: string; may: (p: Powers) => boolean }[] = [
  { path: "/admin/cases", label: "Moderation queue", may: (p) => p.moderate },
  { path: "/admin/users", label: "Users", may: (p) => p.read },
  { path: "/admin/dashboard", label: "Dashboard", may: (p) => p.read },
  { path: "/admin/audit", label: "Audit log", may: (p) => p.administer },
];

function NotAllowed({ powers, what }: { powers: Powers; what: string }) {
  return (
    <section>
      <h1 tabIndex={-1}>Not available to you</h1>
      <p>{what} needs {what === "The audit log" ? "an admin" : "a moderator or an admin"}; you are signed in as{" "}
        {powers.role ?? "a user"}.</p>
    </section>
  );
}

/** Signed in, but not as staff: a plain account, or staff who signed in without their second factor. */
function NotStaff({ powers }: { powers: Powers }) {
  return (
    <section className="narrow">
      <h1 tabIndex={-1}>This panel is for staff</h1>
      {powers.role && !powers.mfa ? (
        <p>Your account is {powers.role} staff, but this session was opened without a second factor. Turn on two-factor
          authentication in the web app, then sign out and sign in here again with your code.</p>
      ) : (
        <p>Your account is not a support, moderator or admin account. Ask an admin to give it a staff role.</p>
      )}
    </section>
  );
}

export function App({ api }: { api: Api }) {
  const path = usePath();
  const [session, setSession] = useState<Session | null>(loadSession);
  const main = useRef<HTMLElement>(null);
  const powers = powersOf(session);

  const signOut = async () => {
    if (session) {
      try {
        await api.auth.logout({ refreshToken: session.refreshToken });
      } catch {
        // the session ends here whatever the server says; its refresh token expires on its own
      }
    }
    saveSession(null);
    navigate("/admin/signin");
  };

  useEffect(() => {
    const update = () => setSession(loadSession());
    addEventListener(SESSION_EVENT, update);
    return () => removeEventListener(SESSION_EVENT, update);
  }, []);

  // A new screen: its heading gets the focus, so screen readers announce it and Tab starts from there.
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [path]);

  const pathname = path.split("?")[0].replace(/\/+$/, "");
  let screen: ReactNode;
  if (!session || pathname === "/admin/signin") {
    screen = <SignIn api={api} onSignedIn={saveSession} />;
  } else if (!powers.read) {
    screen = <NotStaff powers={powers} />;
  } else if (pathname.startsWith("/admin/cases/")) {
    screen = powers.moderate
      ? <CasePage key={pathname} api={api} powers={powers} name={pathname.slice("/admin/".length)} />
      : <NotAllowed powers={powers} what="A case" />;
  } else if (pathname === "/admin/cases") {
    screen = powers.moderate ? <Queue api={api} /> : <NotAllowed powers={powers} what="The moderation queue" />;
  } else if (pathname.startsWith("/admin/users/")) {
    screen = <UserPage key={pathname} api={api} powers={powers} id={pathname.slice("/admin/users/".length)} />;
  } else if (pathname === "/admin/users") {
    screen = <Users api={api} query={new URLSearchParams(path.split("?")[1] ?? "").get("q") ?? ""} />;
  } else if (pathname === "/admin/audit") {
    screen = powers.administer ? <Audit api={api} /> : <NotAllowed powers={powers} what="The audit log" />;
  } else if (pathname === "/admin/dashboard" || !powers.moderate) {
    screen = <Dashboard api={api} />;
  } else {
    screen = <Queue api={api} />; // moderators start at their queue
  }
  const current = (p: string) => pathname === p || pathname.startsWith(p + "/")
    || (pathname === "/admin" && p === (powers.moderate ? "/admin/cases" : "/admin/dashboard"));

  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="bar">
        <a className="brand" href="/admin/" onClick={follow}>Pet Platform <span>admin</span></a>
        <nav aria-label="Main">
          <ul>
            {session && powers.read && SCREENS.filter((s) => s.may(powers)).map((s) => (
              <li key={s.path}>
                <a href={s.path} onClick={follow} aria-current={current(s.path) ? "page" : undefined}>{s.label}</a>
              </li>
            ))}
            {session && (
              <>
                <li className="who" aria-label="Signed in as">
                  {session.email}{powers.role && <span className="role"> ({powers.role})</span>}
                </li>
                <li><button type="button" className="link" onClick={signOut}>Sign out</button></li>
              </>
            )}
          </ul>
        </nav>
      </header>
      <main id="main" ref={main}>{screen}</main>
    </>
  );
}
