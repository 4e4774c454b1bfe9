import { useCallback, useEffect, useState } from "react";
import {
  Interest_State, ListInterestsRequest_Direction, Match_Kind, Match_State, RespondToInterestRequest_Decision,
  type Interest, type Match,
} from "@petplatform/proto/petplatform/matching/v1/matching_pb";
import { userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { useNames } from "../names";
import { follow } from "../router";
import { EndMatch } from "./EndMatch";

const STATE: Record<number, string> = {
  [Interest_State.PENDING]: "waiting for the owner",
  [Interest_State.ACCEPTED]: "accepted",
  [Interest_State.DECLINED]: "declined",
  [Interest_State.WITHDRAWN]: "withdrawn",
};

/** Interest in the person's pets (accept or decline), their own interests, and their matches. */
export function Matches({ api, session }: { api: Api; session: Session }) {
  const me = userOf(session);
  const [received, setReceived] = useState<Interest[] | null>(null);
  const [sent, setSent] = useState<Interest[] | null>(null);
  const [matches, setMatches] = useState<Match[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");

  const load = useCallback(async () => {
    try {
      const [r, s, m] = await Promise.all([
        api.matching.listInterests({ direction: ListInterestsRequest_Direction.RECEIVED, pageSize: 50 }),
        api.matching.listInterests({ direction: ListInterestsRequest_Direction.SENT, pageSize: 50,
                                     states: [Interest_State.PENDING, Interest_State.ACCEPTED, Interest_State.DECLINED] }),
        api.matching.listMatches({ pageSize: 50 }),
      ]);
      setReceived(r.interests);
      setSent(s.interests);
      setMatches(m.matches);
    } catch (e) {
      setProblem(describe(e));
    }
  }, [api]);
  useEffect(() => void load(), [load]);

  const everyone = [...(received ?? []), ...(sent ?? [])].flatMap((i) => [i.pet, i.user]);
  const names = useNames(api, [...everyone, ...(matches ?? []).flatMap((m) => [...m.pets, ...m.users])]);
  const name = (n: string, fallback: string) => names[n] ?? fallback;

  const respond = async (interest: Interest, decision: RespondToInterestRequest_Decision) => {
    setProblem(null);
    try {
      await api.matching.respondToInterest({ name: interest.name, decision });
      const who = name(interest.user, "them");
      setStatus(decision === RespondToInterestRequest_Decision.ACCEPT
        ? `You matched with ${who}. You can now chat.` : `You declined ${who}'s interest.`);
      await load();
    } catch (e) {
      setProblem(describe(e));
    }
  };

  return (
    <section>
      <h1 tabIndex={-1}>Matches and interests</h1>
      <ProblemBanner problem={problem} />
      <div aria-live="polite" className="status">{status}</div>

      <h2>Your matches</h2>
      {matches === null ? <p>Loading…</p> : matches.length === 0 ? <p>No matches yet.</p> : (
        <ul className="rows" aria-label="Your matches">
          {matches.map((m) => {
            const other = m.users.find((u) => u !== me) ?? "";
            return (
              <li key={m.name}>
                <span>
                  {m.kind === Match_Kind.PLAYDATE ? "Playdate: " : "Adoption of "}
                  {m.pets.map((p) => name(p, "a pet")).join(" and ")}
                  {" with "}{name(other, "someone")}
                  {m.state === Match_State.ENDED && <span className="muted"> · ended</span>}
                  {m.state === Match_State.ADOPTED && <span className="muted"> · adopted</span>}
                </span>
                <span className="actions">
                  <a href={`/chat/${m.name.split("/")[1]}`} onClick={follow}>Open chat</a>
                  {m.state === Match_State.ACTIVE && (
                    <EndMatch api={api} match={m.name} other={other} who={name(other, "them")}
                              onEnded={(text) => { setStatus(text); void load(); }} />
                  )}
                </span>
              </li>
            );
          })}
        </ul>
      )}

      <h2>Interest in your pets</h2>
      {received === null ? <p>Loading…</p> : received.length === 0 ? <p>Nobody is waiting for an answer.</p> : (
        <ul className="rows" aria-label="Interest in your pets">
          {received.map((i) => (
            <li key={i.name}>
              <span>
                {name(i.user, "Someone")} {i.superLike ? "super-liked" : "liked"} {name(i.pet, "your pet")}
              </span>
              <span className="actions">
                <button type="button" onClick={() => void respond(i, RespondToInterestRequest_Decision.ACCEPT)}>
                  Accept
                </button>
                <button type="button" className="secondary"
                        onClick={() => void respond(i, RespondToInterestRequest_Decision.DECLINE)}>Decline</button>
              </span>
            </li>
          ))}
        </ul>
      )}

      <h2>Your interests</h2>
      {sent === null ? <p>Loading…</p> : sent.length === 0 ? <p>You have not liked a pet yet. <a href="/feed" onClick={follow}>Open your feed</a>.</p> : (
        <ul className="rows" aria-label="Your interests">
          {sent.map((i) => (
            <li key={i.name}>
              <span>{name(i.pet, "A pet")}: {STATE[i.state] ?? "unknown"}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
