// The moderation queue: cases, highest priority first (the service's order).
import { useState } from "react";
import { Case_State, type Case } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { describe, type Problem } from "@petplatform/kit/errors";
import { ProblemBanner } from "@petplatform/kit/form";
import { follow } from "@petplatform/kit/router";
import type { Api } from "../api";
import { actionName, stateName, userPath, when } from "../labels";
import { useLoad } from "../load";
import { Named, useNames } from "../names";

const VIEWS: { id: string; label: string; states: Case_State[] }[] = [
  { id: "waiting", label: "Open and in review", states: [] },
  { id: "open", label: "Open only", states: [Case_State.OPEN] },
  { id: "resolved", label: "Resolved", states: [Case_State.RESOLVED] },
];

export function Queue({ api }: { api: Api }) {
  const [view, setView] = useState(VIEWS[0].id);
  const [more, setMore] = useState<{ cases: Case[]; token: string }>({ cases: [], token: "" });
  const [moreProblem, setMoreProblem] = useState<Problem | null>(null);
  const states = VIEWS.find((v) => v.id === view)!.states;
  const first = useLoad(async () => {
    const r = await api.admin.listCases({ states, pageSize: 25 });
    setMore({ cases: [], token: r.nextPageToken });
    return r.cases;
  }, view);

  const loadMore = async () => {
    setMoreProblem(null);
    try {
      const r = await api.admin.listCases({ states, pageSize: 25, pageToken: more.token });
      setMore((m) => ({ cases: [...m.cases, ...r.cases], token: r.nextPageToken }));
    } catch (e) {
      setMoreProblem(describe(e));
    }
  };
  const cases = [...(first.data ?? []), ...more.cases];
  const names = useNames(api, cases.flatMap((c) => [c.subject, c.user, c.assignee]));

  return (
    <section>
      <h1 tabIndex={-1}>Moderation queue</h1>
      <div className="toolbar">
        <label htmlFor="queue-view">Show</label>
        <select id="queue-view" value={view} onChange={(e) => setView(e.target.value)}>
          {VIEWS.map((v) => <option key={v.id} value={v.id}>{v.label}</option>)}
        </select>
        <button type="button" className="secondary" onClick={first.reload}>Refresh</button>
      </div>
      <ProblemBanner problem={first.problem} />
      {first.loading && !first.data && <p role="status">Loading the queue…</p>}
      {first.data && cases.length === 0 && <p role="status">No cases here. The queue is clear.</p>}
      {cases.length > 0 && (
        <table className="grid">
          <caption className="visually-hidden">Cases, highest priority first</caption>
          <thead>
            <tr>
              <th scope="col">Subject</th><th scope="col">State</th><th scope="col">Priority</th>
              <th scope="col">Reports</th><th scope="col">Risk</th><th scope="col">Account</th>
              <th scope="col">Assignee</th><th scope="col">Opened</th>
            </tr>
          </thead>
          <tbody>
            {cases.map((c) => (
              <tr key={c.name}>
                <th scope="row">
                  <a href={`/admin/${c.name}`} onClick={follow}><Named name={c.subject} names={names} /></a>
                  {c.held && <span className="tag warn">held</span>}
                  {c.state === Case_State.RESOLVED && <span className="tag">{actionName(c.resolution)}</span>}
                </th>
                <td>{stateName(c.state)}</td>
                <td className="num">{c.priority}</td>
                <td className="num">{c.reportCount}</td>
                <td className="num">{c.riskScore ? c.riskScore.toFixed(2) : "–"}</td>
                <td>{c.user ? <a href={userPath(c.user)} onClick={follow}><Named name={c.user} names={names} /></a> : "unknown"}</td>
                <td>{c.assignee ? <Named name={c.assignee} names={names} /> : "–"}</td>
                <td>{when(c.createTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ProblemBanner problem={moreProblem} />
      {more.token && <button type="button" className="secondary" onClick={loadMore}>Show more cases</button>}
    </section>
  );
}
