// What both apps put around their screens: the session kept current, signing out, and the page frame (skip
// link, bar, navigation, and the screen whose heading takes the focus when the path changes).
import { useEffect, useRef, useState, type ReactNode } from "react";
import type { Client } from "@connectrpc/connect";
import type { AuthService } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { follow, navigate } from "./router";
import { SESSION_EVENT, type Session, type SessionStore } from "./session";

/** The stored session, current as it changes under the screens' feet (refreshed, or over when a refresh is
 * refused), and signing out, which goes to `signInPath`. */
export function useSession({ store, auth, signInPath }: {
  store: SessionStore; auth: Client<typeof AuthService>; signInPath: string;
}): [Session | null, () => Promise<void>] {
  const [session, setSession] = useState<Session | null>(() => store.load());
  useEffect(() => {
    const update = () => setSession(store.load());
    addEventListener(SESSION_EVENT, update);
    return () => removeEventListener(SESSION_EVENT, update);
  }, [store]);

  const signOut = async () => {
    if (session) {
      try {
        await auth.logout({ refreshToken: session.refreshToken });
      } catch {
        // the session ends here whatever the server says; its refresh token expires on its own
      }
    }
    store.save(null);
    navigate(signInPath);
  };
  return [session, signOut];
}

/** The page: `items` are the navigation's list items. */
export function Frame({ path, home, brand, items, children }: {
  path: string; home: string; brand: ReactNode; items: ReactNode; children: ReactNode;
}) {
  const main = useRef<HTMLElement>(null);
  // A new screen: its heading gets the focus, so screen readers announce it and Tab starts from there.
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [path]);
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="bar">
        <a className="brand" href={home} onClick={follow}>{brand}</a>
        <nav aria-label="Main">
          <ul>{items}</ul>
        </nav>
      </header>
      <main id="main" ref={main}>{children}</main>
    </>
  );
}

/** The signed-in account in the bar, and its sign-out button. */
export function Who({ children, signOut }: { children: ReactNode; signOut: () => void }) {
  return (
    <>
      <li className="who" aria-label="Signed in as">{children}</li>
      <li><button type="button" className="link" onClick={signOut}>Sign out</button></li>
    </>
  );
}
