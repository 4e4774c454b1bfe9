import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Room_State, type ChatEvent, type Message, type Room } from "@petplatform/proto/petplatform/chat/v1/chat_pb";
import { userOf, type Api, type Session } from "../api";
import { useChatEvents } from "../chatEvents";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { useNames } from "../names";
import { follow } from "../router";

function otherOf(room: Room, me: string): string {
  return room.members.find((m) => m !== me) ?? "";
}

/** The person's chat rooms, newest activity first, with unread counts; kept current by the live stream. */
export function Rooms({ api, session }: { api: Api; session: Session }) {
  const me = userOf(session);
  const [rooms, setRooms] = useState<Room[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  // Events reload the list, maybe several at once: only the latest answer is shown.
  const latest = useRef(0);

  const load = useCallback(async () => {
    const mine = ++latest.current;
    try {
      const reply = await api.chat.listRooms({ pageSize: 100 });
      if (mine !== latest.current) return;
      setRooms(reply.rooms);
      setProblem(null);
    } catch (e) {
      if (mine === latest.current) setProblem(describe(e));
    }
  }, [api]);
  useEffect(() => void load(), [load]);
  // A new room, a message or a read mark changes the list: read it again.
  useChatEvents(api, (event) => {
    if (event.kind.case === "room" || event.kind.case === "message" || event.kind.case === "receipt") void load();
  });
  const names = useNames(api, (rooms ?? []).map((r) => otherOf(r, me)));

  return (
    <section>
      <h1 tabIndex={-1}>Chats</h1>
      <ProblemBanner problem={problem} />
      {rooms === null ? <p aria-live="polite">Loading your chats…</p> : rooms.length === 0 ? (
        <p>No chats yet: a chat opens when you match. <a href="/matches" onClick={follow}>See your matches</a>.</p>
      ) : (
        <ul className="rows" aria-label="Your chats">
          {rooms.map((room) => {
            const who = names[otherOf(room, me)] ?? "Your match";
            return (
              <li key={room.name}>
                <span>
                  <a href={`/chat/${room.name.split("/")[1]}`} onClick={follow}>{who}</a>
                  {room.lastMessage && <span className="muted"> · {room.lastMessage.text || "(deleted)"}</span>}
                  {room.state === Room_State.CLOSED && <span className="muted"> · closed</span>}
                </span>
                {room.unreadCount > 0 && (
                  <span className="badge">{room.unreadCount} unread</span>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

// Stop saying "typing" this long after the last keystroke.
const TYPING_IDLE_MS = 4000;

function newMessageId(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

/** One room: its history (older pages on demand), live messages, read receipts and typing. */
export function ChatRoom({ api, session, id }: { api: Api; session: Session; id: string }) {
  const me = userOf(session);
  const roomName = `rooms/${id}`;
  const [room, setRoom] = useState<Room | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [older, setOlder] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [text, setText] = useState("");
  const [theirRead, setTheirRead] = useState(0n);
  const [theyType, setTheyType] = useState(false);
  const typingSent = useRef(false);
  const idle = useRef<ReturnType<typeof setTimeout>>(undefined);
  const newest = useRef(0n);

  const other = room ? otherOf(room, me) : "";
  const names = useNames(api, other ? [other] : []);
  const who = names[other] ?? "Your match";

  // Messages by sequence, a newer copy (a tombstone) replacing the one shown.
  const merge = useCallback((incoming: Message[]) => {
    setMessages((shown) => {
      const bySeq = new Map(shown.map((m) => [m.sequence, m]));
      for (const m of incoming) bySeq.set(m.sequence, m);
      const all = [...bySeq.values()].sort((a, b) => Number(a.sequence - b.sequence));
      newest.current = all.length ? all[all.length - 1].sequence : 0n;
      return all;
    });
  }, []);

  const markRead = useCallback((sequence: bigint) => {
    api.chat.markRead({ room: roomName, sequence }).catch(() => {
      // a read mark that does not land is sent again with the next message read
    });
  }, [api, roomName]);

  useEffect(() => {
    setMessages([]);
    newest.current = 0n;
    void (async () => {
      try {
        const [r, page] = await Promise.all([
          api.chat.getRoom({ name: roomName }), api.chat.listMessages({ parent: roomName, pageSize: 30 }),
        ]);
        setRoom(r.room ?? null);
        const theirs = r.room?.receipts.find((x) => x.user !== me);
        setTheirRead(theirs?.readSequence ?? 0n);
        merge(page.messages);
        setOlder(page.nextPageToken);
        if (r.room?.unreadCount) markRead(r.room.lastSequence);
      } catch (e) {
        setProblem(describe(e));
      }
    })();
  }, [api, roomName, me, merge, markRead]);

  useChatEvents(api, (event: ChatEvent) => {
    const kind = event.kind;
    if (kind.case === "message" && kind.value.name.startsWith(roomName + "/")) {
      merge([kind.value]);
      if (kind.value.sender !== me) {
        setTheyType(false);
        markRead(kind.value.sequence);
      }
    } else if (kind.case === "receipt" && kind.value.room === roomName && kind.value.user !== me) {
      setTheirRead((seen) => (kind.value.readSequence > seen ? kind.value.readSequence : seen));
    } else if (kind.case === "typing" && kind.value.room === roomName && kind.value.user !== me) {
      setTheyType(kind.value.typing);
    } else if (kind.case === "room" && kind.value.name === roomName) {
      setRoom(kind.value);
    }
  }, () => (newest.current ? { [roomName]: newest.current } : {}));

  const showOlder = async () => {
    try {
      const page = await api.chat.listMessages({ parent: roomName, pageSize: 30, pageToken: older });
      merge(page.messages);
      setOlder(page.nextPageToken);
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const typing = (value: boolean) => {
    if (typingSent.current === value) return;
    typingSent.current = value;
    api.chat.setTyping({ room: roomName, typing: value }).catch(() => {
      typingSent.current = !value; // best effort: said again on the next keystroke
    });
  };

  const onInput = (value: string) => {
    setText(value);
    typing(value.length > 0);
    clearTimeout(idle.current);
    idle.current = setTimeout(() => typing(false), TYPING_IDLE_MS);
  };

  const send = async (event: FormEvent) => {
    event.preventDefault();
    if (!text.trim()) return;
    setProblem(null);
    clearTimeout(idle.current);
    try {
      const reply = await api.chat.sendMessage({ parent: roomName, messageId: newMessageId(), message: { text } });
      if (reply.message) merge([reply.message]);
      setText("");
      typingSent.current = false; // the server ends typing with the message
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const closed = room?.state === Room_State.CLOSED;
  const lastMine = [...messages].reverse().find((m) => m.sender === me);
  return (
    <section className="chat">
      <p><a href="/chat" onClick={follow}>← All chats</a></p>
      <h1 tabIndex={-1}>Chat with {who}</h1>
      <ProblemBanner problem={problem} />
      {older && <button type="button" className="secondary" onClick={() => void showOlder()}>Show older messages</button>}
      <ol className="messages" aria-label="Messages" aria-live="polite" aria-relevant="additions">
        {messages.map((m) => (
          <li key={String(m.sequence)} className={m.sender === me ? "mine" : "theirs"}>
            <span className="sender">{m.sender === me ? "You" : who}:</span>{" "}
            {m.deleteTime ? <em>This message was deleted.</em> : m.text}
            {m === lastMine && theirRead >= m.sequence && <span className="receipt"> · Seen</span>}
          </li>
        ))}
      </ol>
      {messages.length === 0 && room && <p>No messages yet. Say hello!</p>}
      <p className="typing" aria-live="polite">{theyType ? `${who} is typing…` : ""}</p>
      {closed ? <p>This chat is closed: the match ended.</p> : (
        <form className="composer" onSubmit={(e) => void send(e)}>
          <label htmlFor="message">Message</label>
          <input id="message" value={text} maxLength={4000} autoComplete="off"
                 onChange={(e) => onInput(e.target.value)} onBlur={() => typing(false)} />
          <button type="submit" disabled={!text.trim()}>Send</button>
        </form>
      )}
    </section>
  );
}
