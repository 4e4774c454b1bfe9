import { useCallback, useEffect, useState } from "react";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Notification } from "@petplatform/proto/petplatform/notification/v1/notification_pb";
import type { Session as SignedIn } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { follow } from "../router";

function when(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toLocaleString() : "";
}

/** Where a notification's target opens in the app, when it has a screen. */
function linkOf(target: string): string {
  if (target.startsWith("rooms/")) return `/chat/${target.split("/")[1]}`;
  if (target.startsWith("matches/") || target.startsWith("interests/")) return "/matches";
  if (target.startsWith("pets/")) return `/${target}`;
  return "";
}

/** The person's notifications, newest first; opening the screen leaves them unread until asked. */
export function Notifications({ api }: { api: Api }) {
  const [items, setItems] = useState<Notification[] | null>(null);
  const [unread, setUnread] = useState(0);
  const [problem, setProblem] = useState<Problem | null>(null);

  const load = useCallback(async () => {
    try {
      const reply = await api.notifications.listNotifications({ pageSize: 50 });
      setItems(reply.notifications);
      setUnread(reply.unreadCount);
    } catch (e) {
      setProblem(describe(e));
    }
  }, [api]);
  useEffect(() => void load(), [load]);

  const markAll = async () => {
    try {
      await api.notifications.markNotificationsRead({ all: true });
      await load();
    } catch (e) {
      setProblem(describe(e));
    }
  };

  return (
    <section>
      <h1 tabIndex={-1}>Notifications</h1>
      <ProblemBanner problem={problem} />
      <p aria-live="polite" className="status">
        {items === null ? "Loading…" : unread === 0 ? "Nothing unread." : `${unread} unread`}
      </p>
      {unread > 0 && <button type="button" className="secondary" onClick={() => void markAll()}>Mark all read</button>}
      {items && items.length === 0 && <p>No notifications yet.</p>}
      {items && items.length > 0 && (
        <ul className="rows" aria-label="Your notifications">
          {items.map((n) => {
            const href = linkOf(n.target);
            return (
              <li key={n.name} className={n.readTime ? "" : "unread"}>
                <span>
                  {!n.readTime && <span className="badge">New</span>}{" "}
                  {href ? <a href={href} onClick={follow}>{n.title}</a> : <strong>{n.title}</strong>}
                  {n.body && <span className="muted"> · {n.body}</span>}
                </span>
                <time className="muted">{when(n.createTime)}</time>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

function methodText(method: string): string {
  const [how, mfa] = method.split("+");
  const base = how === "password" ? "Password" : how.startsWith("provider:") ? `Provider (${how.slice(9)})` : how;
  return mfa ? `${base} and a second factor` : base;
}

/** Where the person is signed in, and ending any of those sessions (or all but this one). */
export function Sessions({ api, session }: { api: Api; session: Session }) {
  const [sessions, setSessions] = useState<SignedIn[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");

  const load = useCallback(async () => {
    try {
      setSessions((await api.auth.listSessions({ parent: userOf(session) })).sessions);
    } catch (e) {
      setProblem(describe(e));
    }
  }, [api, session]);
  useEffect(() => void load(), [load]);

  const revoke = async (name: string) => {
    setProblem(null);
    try {
      const reply = await api.auth.revokeSession({ name });
      setStatus(reply.revokedCount === 1 ? "One session was signed out." : `${reply.revokedCount} sessions were signed out.`);
      await load();
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const others = (sessions ?? []).filter((s) => !s.current).length;
  return (
    <section>
      <h1 tabIndex={-1}>Where you are signed in</h1>
      <ProblemBanner problem={problem} />
      <p aria-live="polite" className="status">{status}</p>
      {others > 0 && (
        <button type="button" className="secondary" onClick={() => void revoke(`${userOf(session)}/sessions/-`)}>
          Sign out everywhere else
        </button>
      )}
      {sessions === null ? <p>Loading…</p> : (
        <ul className="rows" aria-label="Your sessions">
          {sessions.map((s) => (
            <li key={s.name}>
              <span>
                <strong>{s.current ? "This browser" : s.userAgent || "Unknown device"}</strong>
                <span className="muted"> · {methodText(s.signInMethod)} · since {when(s.createTime)}
                  {s.lastUseTime && ` · last used ${when(s.lastUseTime)}`}
                  {s.clientAddress && ` · from ${s.clientAddress}`}</span>
              </span>
              {!s.current && (
                <button type="button" className="secondary" onClick={() => void revoke(s.name)}>End session</button>
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
