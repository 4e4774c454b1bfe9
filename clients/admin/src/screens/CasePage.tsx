// A case with its evidence (the reports, the fraud scores and their factors) and its history; moderators
// claim it and decide it with a reason, admins also reverse a decision.
import { useState, type FormEvent } from "react";
import { Case_State, type Case } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { ModerationActionTaken_Action as Action } from "@petplatform/proto/petplatform/admin/v1/events_pb";
import { describe, type Problem } from "@petplatform/kit/errors";
import { Area, ProblemBanner } from "@petplatform/kit/form";
import { follow } from "@petplatform/kit/router";
import { userOf } from "@petplatform/kit/session";
import { loadSession, type Api, type Powers } from "../api";
import { actionName, decisionsFor, reasonName, stateName, userPath, when } from "../labels";
import { useLoad } from "../load";
import { Named, useNames } from "../names";

function Decide({ api, c, onDone }: { api: Api; c: Case; onDone: () => void }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const choices = decisionsFor(c.subject);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const action = Number(form.get("action") ?? 0) as Action;
    if (!action) {
      setProblem({ message: "Choose an action.", fields: { action: "Choose what to do with this case." } });
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      await api.admin.resolveCase({ name: c.name, action, reason: String(form.get("reason")).trim() });
      onDone();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };
  const actionError = problem?.fields.action;
  return (
    <form onSubmit={submit} noValidate className="panel" aria-labelledby="decide-heading">
      <h2 id="decide-heading">Take an action</h2>
      <ProblemBanner problem={problem} />
      <fieldset className={actionError ? "invalid" : undefined} aria-describedby={actionError ? "action-error" : undefined}>
        <legend>Action</legend>
        {choices.map((a) => (
          <label key={a} className="choice">
            <input type="radio" name="action" value={a} /> {actionName(a)}
          </label>
        ))}
        {actionError && <p id="action-error" className="error-text">{actionError}</p>}
      </fieldset>
      <Area label="Reason" field="reason" problem={problem} rows={3} maxLength={1000} required
            hint="Shown to the account's owner. Up to 1000 characters." />
      <button type="submit" disabled={busy}>{busy ? "Saving…" : "Take action"}</button>
    </form>
  );
}

function Reverse({ api, c, onDone }: { api: Api; c: Case; onDone: () => void }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setProblem(null);
    try {
      await api.admin.reverseAction({ name: c.name, reason: String(form.get("reason")).trim() });
      onDone();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} noValidate className="panel" aria-labelledby="reverse-heading">
      <h2 id="reverse-heading">Reverse the action in force</h2>
      <p className="hint">Undoes {c.resolution ? actionName(c.resolution).toLowerCase() : "the automatic hold"} and opens the
        case again. Admins only.</p>
      <ProblemBanner problem={problem} />
      <Area label="Reason for reversing" field="reason" problem={problem} rows={2} maxLength={1000} required />
      <button type="submit" className="secondary" disabled={busy}>{busy ? "Saving…" : "Reverse action"}</button>
    </form>
  );
}

/** What a case is about, in words, while (or when) its subject has no name to show. */
function subjectKind(subject: string): string {
  if (subject.startsWith("pets/")) return "a pet listing";
  if (subject.startsWith("users/")) return "an account";
  if (subject.startsWith("businesses/")) return "a business";
  return subject.includes("/messages/") ? "a chat message" : subject;
}

export function CasePage({ api, powers, name }: { api: Api; powers: Powers; name: string }) {
  const loaded = useLoad(() => api.admin.getCase({ name }).then((r) => r.case!), name);
  const [claimProblem, setClaimProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const me = userOf(loadSession()!);
  // The answers of claim, resolve and reverse carry the case without its evidence: read it again whole.
  const done = (what: string) => () => {
    setNotice(what);
    loaded.reload();
  };
  const c = loaded.data;
  const names = useNames(api, c ? [c.subject, c.user, c.assignee, ...c.reports.map((r) => r.reporter),
                                  ...c.actions.map((a) => a.actor)] : []);

  const claim = async () => {
    setClaimProblem(null);
    try {
      await api.admin.claimCase({ name });
      done("You have claimed this case.")();
    } catch (e) {
      setClaimProblem(describe(e));
    }
  };

  if (!c) {
    return (
      <section>
        <h1 tabIndex={-1}>Case</h1>
        <ProblemBanner problem={loaded.problem} />
        {loaded.loading && <p role="status">Loading the case…</p>}
      </section>
    );
  }
  const claimable = c.state === Case_State.OPEN || (c.state === Case_State.IN_REVIEW && c.assignee !== me && powers.administer);
  return (
    <section>
      <p><a href="/admin/cases" onClick={follow}>← Moderation queue</a></p>
      <h1 tabIndex={-1}>Case: {names[c.subject] ?? subjectKind(c.subject)}</h1>
      {notice && <p role="status" className="notice">{notice}</p>}
      <dl className="facts">
        <dt>Case</dt><dd className="id">{c.name}</dd>
        <dt>Subject</dt><dd><Named name={c.subject} names={names} /></dd>
        <dt>Account</dt><dd>{c.user ? <a href={userPath(c.user)} onClick={follow}><Named name={c.user} names={names} /></a> : "unknown"}</dd>
        <dt>State</dt><dd>{stateName(c.state)}{c.assignee && <> ({c.assignee === me ? "you" : <Named name={c.assignee} names={names} />})</>}</dd>
        <dt>Decision</dt><dd>{c.resolution ? actionName(c.resolution) : "none yet"}</dd>
        <dt>Priority</dt><dd>{c.priority}</dd>
        <dt>Reports</dt><dd>{c.reportCount}</dd>
        <dt>Highest risk</dt><dd>{c.riskScore ? c.riskScore.toFixed(2) : "no fraud score"}</dd>
        <dt>Held</dt><dd>{c.held ? "yes, by the automatic hold" : "no"}</dd>
        <dt>Opened</dt><dd>{when(c.createTime)}</dd>
        <dt>Last change</dt><dd>{when(c.updateTime)}</dd>
      </dl>
      {claimable && (
        <p><button type="button" className="secondary" onClick={claim}>
          {c.state === Case_State.IN_REVIEW ? "Take over this case" : "Claim this case"}</button></p>
      )}
      <ProblemBanner problem={claimProblem} />

      <h2>Reports ({c.reports.length})</h2>
      {c.reports.length === 0 ? <p>No one reported this; the case comes from a fraud score.</p> : (
        <ul className="evidence">
          {c.reports.map((r) => (
            <li key={r.name}>
              <p><strong>{reasonName(r.reason)}</strong> by{" "}
                <a href={userPath(r.reporter)} onClick={follow}><Named name={r.reporter} names={names} /></a>, {when(r.createTime)}</p>
              {r.details && <blockquote>{r.details}</blockquote>}
            </li>
          ))}
        </ul>
      )}

      <h2>Fraud scores ({c.evidence.length})</h2>
      {c.evidence.length === 0 ? <p>No fraud score for this subject.</p> : c.evidence.map((e, i) => (
        <div key={i} className="evidence-card">
          <p><strong>Score {e.score.toFixed(2)}</strong> on {e.subject} by model {e.model}, {when(e.createTime)}
            {e.hold && <span className="tag warn">hold asked</span>}</p>
          <table className="grid factors">
            <caption>Factors, largest first</caption>
            <thead><tr><th scope="col">Factor</th><th scope="col">Share of the score</th></tr></thead>
            <tbody>
              {e.factors.map((f) => (
                <tr key={f.code}>
                  <th scope="row">{f.description} <span className="muted">({f.code})</span></th>
                  <td>
                    <span className="bar-cell">
                      <span className="bar-fill" style={{ width: `${Math.round(f.contribution * 100)}%` }} />
                    </span> {Math.round(f.contribution * 100)}%
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}

      <h2>History</h2>
      {c.actions.length === 0 ? <p>No action taken yet.</p> : (
        <ol className="history">
          {c.actions.map((a, i) => (
            <li key={i}>
              {when(a.createTime)}: {a.reversal ? "reversed " : ""}<strong>{actionName(a.action)}</strong>
              {" "}by {a.actor ? <Named name={a.actor} names={names} /> : "the automatic hold"}{a.reason && <>: “{a.reason}”</>}
            </li>
          ))}
        </ol>
      )}

      {c.state !== Case_State.RESOLVED && powers.moderate && <Decide api={api} c={c} onDone={done("Action taken.")} />}
      {powers.administer && (c.resolution !== Action.UNSPECIFIED && c.resolution !== Action.DISMISS || c.held)
        && <Reverse api={api} c={c} onDone={done("The action was reversed; the case is open again.")} />}
    </section>
  );
}
