// Ending a match from the matches list or its chat: unmatch (the chat closes, its history stays), or block the
// other person (every match with them ends, and each disappears from the other's feed). Both ask first.
import { useState } from "react";
import type { Api } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";

export function EndMatch({ api, match, other, who, onEnded }: {
  api: Api; match: string; other: string; who: string; onEnded: (text: string) => void;
}) {
  const [asking, setAsking] = useState<"unmatch" | "block" | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const go = async () => {
    setProblem(null);
    try {
      if (asking === "unmatch") {
        await api.matching.unmatch({ name: match });
        onEnded(`You unmatched with ${who}. Your chat is closed; its messages stay readable.`);
      } else {
        await api.matching.blockUser({ name: other });
        onEnded(`You blocked ${who}. You will not see each other again, and your matches with them have ended.`);
      }
      setAsking(null);
    } catch (e) {
      setProblem(describe(e));
    }
  };
  if (!asking) {
    return (
      <span className="actions">
        <button type="button" className="secondary" onClick={() => setAsking("unmatch")}
                aria-label={`Unmatch with ${who}`}>Unmatch</button>
        <button type="button" className="secondary danger" onClick={() => setAsking("block")}
                aria-label={`Block ${who}`}>Block</button>
      </span>
    );
  }
  return (
    <div className="confirm" role="group" aria-label={asking === "unmatch" ? `Unmatch with ${who}` : `Block ${who}`}>
      <ProblemBanner problem={problem} />
      <p>{asking === "unmatch"
        ? `Unmatch with ${who}? Your chat closes and you cannot write to each other any more.`
        : `Block ${who}? You disappear from each other's feeds, and every match with them ends.`}</p>
      <span className="actions">
        <button type="button" onClick={() => void go()}>{asking === "unmatch" ? "Yes, unmatch" : "Yes, block"}</button>
        <button type="button" className="secondary" onClick={() => setAsking(null)}>Keep the match</button>
      </span>
    </div>
  );
}
