import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Room_State, type Attachment, type ChatEvent, type Message, type Room,
} from "@petplatform/proto/petplatform/chat/v1/chat_pb";
import { userOf, type Api, type Session } from "../api";
import { useChatEvents } from "../chatEvents";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { useNames } from "../names";
import { Report } from "../Report";
import { follow } from "../router";
import { EndMatch } from "./EndMatch";

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

// At most this many files with one message, as SendMessage takes them.
const MAX_ATTACHMENTS = 4;

/** An attachment, fetched through GetAttachment (members only: there is no public address for it). Images are
 * shown; other files are offered for download. */
function AttachmentView({ api, attachment }: { api: Api; attachment: Attachment }) {
  const [url, setUrl] = useState("");
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let made = "";
    api.chat.getAttachment({ name: attachment.name }).then((r) => {
      made = URL.createObjectURL(new Blob([r.content as Uint8Array<ArrayBuffer>], { type: attachment.contentType }));
      setUrl(made);
    }, () => setFailed(true));
    return () => { if (made) URL.revokeObjectURL(made); };
  }, [api, attachment.name, attachment.contentType]);
  const label = attachment.filename || "attachment";
  if (failed) return <span className="muted">({label} could not be loaded)</span>;
  if (!url) return <span className="muted">Loading {label}…</span>;
  if (attachment.contentType.startsWith("image/")) {
    return <img className="attachment" src={url} alt={`Image sent: ${label}`} width={attachment.width || undefined}
                height={attachment.height || undefined} />;
  }
  return <a href={url} download={label}>Download {label}</a>;
}

function lastSeenText(when: Date | undefined): string {
  if (!when) return "";
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return new Date().toDateString() === when.toDateString() ? `last seen ${time}`
    : `last seen ${when.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
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
  // Presence from the stream's events (one for each peer once caught up, then changes), kept for everyone:
  // the stream may say where the other member stands before the room (and so who they are) has loaded.
  const [presence, setPresence] = useState<Record<string, { online: boolean; lastSeen?: Date }>>({});
  const [files, setFiles] = useState<File[]>([]);
  const [status, setStatus] = useState("");
  const fileInput = useRef<HTMLInputElement>(null);
  const typingSent = useRef(false);
  const idle = useRef<ReturnType<typeof setTimeout>>(undefined);
  const newest = useRef(0n);

  const other = room ? otherOf(room, me) : "";
  const names = useNames(api, other ? [other] : []);
  const who = names[other] ?? "Your match";
  const { online, lastSeen } = presence[other] ?? { online: null };

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
    } else if (kind.case === "presence") {
      const { user, online, lastSeenTime } = kind.value;
      setPresence((known) => ({ ...known, [user]: { online, lastSeen: lastSeenTime && timestampDate(lastSeenTime) } }));
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
    if (!text.trim() && files.length === 0) return;
    setProblem(null);
    clearTimeout(idle.current);
    try {
      // The chat service judges each file by its bytes (type, size): the browser's type is only a claim.
      const attachments = await Promise.all(files.map(async (f) => ({
        content: new Uint8Array(await f.arrayBuffer()), contentType: f.type || "application/octet-stream",
        filename: f.name })));
      const reply = await api.chat.sendMessage({ parent: roomName, messageId: newMessageId(), message: { text },
                                                 attachments });
      if (reply.message) merge([reply.message]);
      setText("");
      setFiles([]);
      if (fileInput.current) fileInput.current.value = "";
      typingSent.current = false; // the server ends typing with the message
    } catch (e) {
      setProblem(describe(e));
    }
  };

  const choose = (list: FileList | null) => {
    const chosen = [...(list ?? [])];
    if (chosen.length > MAX_ATTACHMENTS) {
      setProblem({ message: `Send at most ${MAX_ATTACHMENTS} files with one message.`, fields: {} });
      setFiles(chosen.slice(0, MAX_ATTACHMENTS));
    } else {
      setProblem(null);
      setFiles(chosen);
    }
  };

  const closed = room?.state === Room_State.CLOSED;
  const lastMine = [...messages].reverse().find((m) => m.sender === me);
  return (
    <section className="chat">
      <p><a href="/chat" onClick={follow}>← All chats</a></p>
      <h1 tabIndex={-1}>Chat with {who}</h1>
      <p className="presence" aria-live="polite">
        {online ? <><span className="dot online" aria-hidden="true" /> {who} is online</>
          : online === false ? <><span className="dot" aria-hidden="true" /> {who} is offline{lastSeen ? `, ${lastSeenText(lastSeen)}` : ""}</>
          : ""}
      </p>
      {room && room.state !== Room_State.CLOSED && (
        <EndMatch api={api} match={room.match} other={other} who={who} onEnded={setStatus} />
      )}
      <p role="status" className="status">{status}</p>
      <ProblemBanner problem={problem} />
      {older && <button type="button" className="secondary" onClick={() => void showOlder()}>Show older messages</button>}
      <ol className="messages" aria-label="Messages" aria-live="polite" aria-relevant="additions">
        {messages.map((m) => (
          <li key={String(m.sequence)} className={m.sender === me ? "mine" : "theirs"}>
            <span className="sender">{m.sender === me ? "You" : who}:</span>{" "}
            {m.deleteTime ? <em>This message was deleted.</em> : m.text}
            {!m.deleteTime && m.attachments.length > 0 && (
              <span className="attachments">
                {m.attachments.map((a) => <AttachmentView key={a.name} api={api} attachment={a} />)}
              </span>
            )}
            {m === lastMine && theirRead >= m.sequence && <span className="receipt"> · Seen</span>}
            {m.sender !== me && !m.deleteTime && <Report api={api} subject={m.name} what={`this message from ${who}`} />}
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
          <label className="attach" htmlFor="attach">Attach files</label>
          <input id="attach" ref={fileInput} type="file" multiple aria-describedby="attach-hint"
                 accept="image/jpeg,image/png,image/webp,application/pdf,text/plain"
                 onChange={(e) => choose(e.target.files)} />
          <button type="submit" disabled={!text.trim() && files.length === 0}>Send</button>
          <p id="attach-hint" className="hint">
            {files.length ? `${files.length} file${files.length === 1 ? "" : "s"} ready: ${files.map((f) => f.name).join(", ")}`
              : "Photos (JPEG, PNG, WebP) up to 5 MB, PDF or text files up to 1 MB; up to 4 at a time."}
          </p>
        </form>
      )}
    </section>
  );
}
