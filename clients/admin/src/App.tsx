import type { ReactNode } from "react";
import { follow, usePath } from "@petplatform/kit/router";
import { Frame, useSession, Who } from "@petplatform/kit/shell";
import { powersOf, saveSession, sessionStore, type Api, type Powers } from "./api";
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
  const [session, signOut] = useSession({ store: sessionStore, auth: api.auth, signInPath: "/admin/signin" });
  const powers = powersOf(session);

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
    <Frame path={path} home="/admin/" brand={<>Pet Platform <span>admin</span></>} items={<>
      {session && powers.read && SCREENS.filter((s) => s.may(powers)).map((s) => (
        <li key={s.path}>
          <a href={s.path} onClick={follow} aria-current={current(s.path) ? "page" : undefined}>{s.label}</a>
        </li>
      ))}
      {session && (
        <Who signOut={signOut}>{session.email}{powers.role && <span className="role"> ({powers.role})</span>}</Who>
      )}
    </>}>{screen}</Frame>
  );
}
