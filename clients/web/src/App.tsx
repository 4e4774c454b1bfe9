import type { ReactNode } from "react";
import { Frame, useSession, Who } from "@petplatform/kit/shell";
import { saveSession, sessionStore, type Api } from "./api";
import { follow, usePath } from "./router";
import { BusinessPage, Businesses } from "./screens/Businesses";
import { Bookings, IncomingBookings } from "./screens/Bookings";
import { ChatRoom, Rooms } from "./screens/Chat";
import { Feed } from "./screens/Feed";
import { Matches } from "./screens/Matches";
import { MyPets, PetForm } from "./screens/MyPets";
import { Security } from "./screens/Security";
import { Notifications, Sessions } from "./screens/Mine";
import { PetPage } from "./screens/PetPage";
import { Pets } from "./screens/Pets";
import { SignIn } from "./screens/SignIn";
import { SignUp } from "./screens/SignUp";

// The signed-in person's own screens: path -> its name in the navigation.
const MINE: [string, string][] = [
  ["/feed", "Feed"], ["/mypets", "My pets"], ["/matches", "Matches"], ["/chat", "Chats"], ["/businesses", "Services"],
  ["/bookings", "Bookings"], ["/incoming", "My business"], ["/notifications", "Notifications"],
  ["/sessions", "Sessions"], ["/security", "Security"],
];

function SignInFirst() {
  return (
    <section>
      <h1 tabIndex={-1}>Please sign in</h1>
      <p>This page is yours alone: <a href="/signin" onClick={follow}>sign in</a> or{" "}
        <a href="/signup" onClick={follow}>create an account</a> to see it.</p>
    </section>
  );
}

export function App({ api }: { api: Api }) {
  const path = usePath();
  const [session, signOut] = useSession({ store: sessionStore, auth: api.auth, signInPath: "/signin" });

  const pathname = path.split("?")[0];
  let screen: ReactNode;
  if (pathname === "/signup") screen = <SignUp api={api} onSignedIn={saveSession} />;
  else if (pathname === "/signin" || pathname === "/signin/callback") {
    screen = <SignIn api={api} onSignedIn={saveSession} callback={pathname === "/signin/callback"} />;
  }
  else if (pathname.startsWith("/pets/")) screen = <PetPage api={api} session={session} name={pathname.slice(1)} />;
  else if (MINE.some(([p]) => p === pathname || pathname.startsWith(p + "/"))) {
    if (!session) screen = <SignInFirst />;
    else if (pathname === "/feed") screen = <Feed api={api} session={session} />;
    else if (pathname === "/matches") screen = <Matches api={api} session={session} />;
    else if (pathname === "/businesses") screen = <Businesses api={api} />;
    else if (pathname.startsWith("/businesses/")) {
      screen = <BusinessPage key={pathname} api={api} session={session} name={pathname.slice(1)} />;
    }
    else if (pathname === "/bookings") screen = <Bookings api={api} />;
    else if (pathname === "/incoming") screen = <IncomingBookings api={api} />;
    else if (pathname === "/mypets") screen = <MyPets api={api} session={session} />;
    else if (pathname.startsWith("/mypets/")) {
      const id = pathname.slice("/mypets/".length);
      screen = <PetForm key={pathname} api={api} id={id === "new" ? "" : id} />;
    }
    else if (pathname === "/security") screen = <Security api={api} session={session} />;
    else if (pathname === "/notifications") screen = <Notifications api={api} />;
    else if (pathname === "/sessions") screen = <Sessions api={api} session={session} />;
    else if (pathname === "/chat") screen = <Rooms api={api} session={session} />;
    else if (pathname.startsWith("/chat/")) {
      screen = <ChatRoom key={pathname} api={api} session={session} id={pathname.slice("/chat/".length)} />;
    }
  }
  screen ??= <Pets api={api} />;

  return (
    <Frame path={path} home="/" brand="Pet Platform" items={<>
      <li><a href="/" onClick={follow} aria-current={pathname === "/" ? "page" : undefined}>Pets</a></li>
      {session ? (
        <>
          {MINE.map(([href, label]) => (
            <li key={href}>
              <a href={href} onClick={follow}
                 aria-current={pathname === href || pathname.startsWith(href + "/") ? "page" : undefined}>{label}</a>
            </li>
          ))}
          <Who signOut={signOut}>{session.email}</Who>
        </>
      ) : (
        <>
          <li><a href="/signin" onClick={follow} aria-current={pathname === "/signin" ? "page" : undefined}>Sign in</a></li>
          <li><a href="/signup" onClick={follow} aria-current={pathname === "/signup" ? "page" : undefined}>Sign up</a></li>
        </>
      )}
    </>}>{screen}</Frame>
  );
}
