import { useEffect, useRef, useState } from "react";
import { loadSession, saveSession, SESSION_EVENT, type Api, type Session } from "./api";
import { follow, navigate, usePath } from "./router";
import { PetPage } from "./screens/PetPage";
import { Pets } from "./screens/Pets";
import { SignIn } from "./screens/SignIn";
import { SignUp } from "./screens/SignUp";

export function App({ api }: { api: Api }) {
  const path = usePath();
  const [session, setSession] = useState<Session | null>(loadSession);
  const main = useRef<HTMLElement>(null);

  const signedIn = (s: Session | null) => saveSession(s);
  const signOut = async () => {
    if (session) {
      try {
        await api.auth.logout({ refreshToken: session.refreshToken });
      } catch {
        // the session ends here whatever the server says; its refresh token expires on its own
      }
    }
    signedIn(null);
    navigate("/signin");
  };

  // The session also changes under the screens' feet: refreshed, or over when a refresh is refused.
  useEffect(() => {
    const update = () => setSession(loadSession());
    addEventListener(SESSION_EVENT, update);
    return () => removeEventListener(SESSION_EVENT, update);
  }, []);

  // A new screen: its heading gets the focus, so screen readers announce it and Tab starts from there.
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [path]);

  const pathname = path.split("?")[0];
  let screen;
  if (pathname === "/signup") screen = <SignUp api={api} onSignedIn={signedIn} />;
  else if (pathname === "/signin" || pathname === "/signin/callback") {
    screen = <SignIn api={api} onSignedIn={signedIn} callback={pathname === "/signin/callback"} />;
  }
  else if (pathname.startsWith("/pets/")) screen = <PetPage api={api} name={pathname.slice(1)} />;
  else screen = <Pets api={api} />;

  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="bar">
        <a className="brand" href="/" onClick={follow}>Pet Platform</a>
        <nav aria-label="Main">
          <ul>
            <li><a href="/" onClick={follow} aria-current={pathname === "/" ? "page" : undefined}>Pets</a></li>
            {session ? (
              <>
                <li className="who" aria-label="Signed in as">{session.email}</li>
                <li><button type="button" className="link" onClick={signOut}>Sign out</button></li>
              </>
            ) : (
              <>
                <li><a href="/signin" onClick={follow} aria-current={pathname === "/signin" ? "page" : undefined}>Sign in</a></li>
                <li><a href="/signup" onClick={follow} aria-current={pathname === "/signup" ? "page" : undefined}>Sign up</a></li>
              </>
            )}
          </ul>
        </nav>
      </header>
      <main id="main" ref={main}>{screen}</main>
    </>
  );
}
