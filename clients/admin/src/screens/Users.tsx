// Accounts for staff: search by email or name, and one account's record (role, status, reports, cases, sessions,
// listings). Moderators change an account's status with a reason; admins also its role and lift bans.
import { useState, type FormEvent } from "react";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountStatus, Role } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { Pet_Moderation } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { describe, type Problem } from "@petplatform/kit/errors";
import { Area, Field, ProblemBanner } from "@petplatform/kit/form";
import { follow, navigate } from "@petplatform/kit/router";
import type { Api, Powers } from "../api";
import { actionName, roleName, ROLES, stateName, statusName, STATUSES, userPath, when } from "../labels";
import { useLoad } from "../load";

/** Auth's ListAccounts: accounts by role and status (staff, suspended ones...), newest first. */
function ByRoleAndStatus({ api }: { api: Api }) {
  const [filter, setFilter] = useState<{ role: Role; status: AccountStatus } | null>(null);
  const listed = useLoad(
    () => (filter ? api.auth.listAccounts({ ...filter, pageSize: 50 }).then((r) => r.accounts) : Promise.resolve(null)),
    filter ? `${filter.role}/${filter.status}` : "");
  const list = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setFilter({ role: Number(form.get("role")) as Role, status: Number(form.get("status")) as AccountStatus });
  };
  return (
    <>
      <h2>Accounts by role and status</h2>
      <form onSubmit={list} className="toolbar" noValidate aria-label="Accounts by role and status">
        <div className="field">
          <label htmlFor="list-role">Role</label>
          <select id="list-role" name="role" defaultValue={Role.UNSPECIFIED}>
            <option value={Role.UNSPECIFIED}>Any role</option>
            {ROLES.map(([r, label]) => <option key={r} value={r}>{label}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="list-status">Status</label>
          <select id="list-status" name="status" defaultValue={AccountStatus.UNSPECIFIED}>
            <option value={AccountStatus.UNSPECIFIED}>Any status</option>
            {STATUSES.map(([st, label]) => <option key={st} value={st}>{label}</option>)}
          </select>
        </div>
        <button type="submit" className="secondary">List</button>
      </form>
      <ProblemBanner problem={listed.problem} />
      {listed.data && listed.data.length === 0 && <p role="status">No account has that role and status.</p>}
      {listed.data && listed.data.length > 0 && (
        <table className="grid">
          <caption className="visually-hidden">Accounts with that role and status, newest first</caption>
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th>
              <th scope="col">Status</th><th scope="col">Registered</th></tr>
          </thead>
          <tbody>
            {listed.data.map((u) => (
              <tr key={u.name}>
                <th scope="row"><a href={userPath(u.name)} onClick={follow}>{u.displayName || u.name}</a></th>
                <td>{u.email}</td><td>{roleName(u.role)}</td>
                <td>{statusName(u.status)}{u.statusReason && <>: “{u.statusReason}”</>}</td>
                <td>{when(u.createTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

export function Users({ api, query }: { api: Api; query: string }) {
  const found = useLoad(
    () => (query ? api.admin.searchUserRecords({ query, pageSize: 50 }).then((r) => r.userRecords)
                 : Promise.resolve(null)),
    query);
  const search = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const q = String(new FormData(event.currentTarget).get("query")).trim();
    navigate(`/admin/users?q=${encodeURIComponent(q)}`);
  };
  return (
    <section>
      <h1 tabIndex={-1}>Users</h1>
      <form onSubmit={search} role="search" className="toolbar" noValidate>
        <Field label="Email or name" field="query" problem={found.problem} defaultValue={query} key={query}
               hint="At least 2 characters, any case." minLength={2} />
        <button type="submit">Search</button>
      </form>
      <ProblemBanner problem={found.problem} />
      {found.loading && query && <p role="status">Searching…</p>}
      {found.data && found.data.length === 0 && <p role="status">No account matches “{query}”.</p>}
      {found.data && found.data.length > 0 && (
        <table className="grid">
          <caption className="visually-hidden">Accounts matching “{query}”, newest first</caption>
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th>
              <th scope="col">Status</th><th scope="col">Registered</th></tr>
          </thead>
          <tbody>
            {found.data.map((u) => (
              <tr key={u.name}>
                <th scope="row"><a href={userPath(u.user)} onClick={follow}>{u.displayName || u.user}</a></th>
                <td>{u.email}</td>
                <td>{roleName(u.role)}</td>
                <td><span className={u.status === AccountStatus.ACTIVE ? "" : "tag warn"}>{statusName(u.status)}</span></td>
                <td>{when(u.createTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ByRoleAndStatus api={api} />
    </section>
  );
}

function SetStatus({ api, powers, user, current, onDone }: {
  api: Api; powers: Powers; user: string; current: AccountStatus; onDone: () => void;
}) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<AccountStatus>(
    current === AccountStatus.ACTIVE ? AccountStatus.SUSPENDED : AccountStatus.ACTIVE);
  // Moderators suspend, ban and reinstate; lifting a ban is an admin's.
  const options = STATUSES.filter(([s]) => s !== current
    && !(current === AccountStatus.BANNED && !powers.administer));
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const until = String(form.get("end_time") ?? "");
    setBusy(true);
    setProblem(null);
    try {
      await api.auth.setAccountStatus({
        name: user, status, reason: String(form.get("reason")).trim(),
        endTime: status === AccountStatus.SUSPENDED && until ? timestampFromDate(new Date(until)) : undefined,
      });
      onDone();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };
  if (options.length === 0) return <p className="hint">Only an admin can lift a ban.</p>;
  return (
    <form onSubmit={submit} noValidate className="panel" aria-labelledby="status-heading">
      <h2 id="status-heading">Change status</h2>
      <ProblemBanner problem={problem} />
      <div className="field">
        <label htmlFor="new-status">New status</label>
        <select id="new-status" value={status} onChange={(e) => setStatus(Number(e.target.value) as AccountStatus)}>
          {options.map(([s, label]) => <option key={s} value={s}>{label === "Active" ? "Active (reinstate)" : label}</option>)}
        </select>
      </div>
      {status === AccountStatus.SUSPENDED && (
        <Field label="Suspended until (optional)" field="end_time" problem={problem} type="datetime-local"
               hint="Left empty, the suspension lasts until it is lifted." />
      )}
      <Area label="Reason" field="reason" problem={problem} rows={2} maxLength={500} required
            hint="Shown to the account's owner. Up to 500 characters." />
      <button type="submit" disabled={busy}>{busy ? "Saving…" : "Change status"}</button>
    </form>
  );
}

function SetRole({ api, user, current, onDone }: { api: Api; user: string; current: Role; onDone: () => void }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const role = Number(new FormData(event.currentTarget).get("role")) as Role;
    setBusy(true);
    setProblem(null);
    try {
      await api.auth.setAccountRole({ name: user, role });
      onDone();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} noValidate className="panel" aria-labelledby="role-heading">
      <h2 id="role-heading">Change role</h2>
      <p className="hint">The account's sessions end; the new role holds from its next sign-in, with a second factor
        for staff roles.</p>
      <ProblemBanner problem={problem} />
      <div className="field">
        <label htmlFor="new-role">Role</label>
        <select id="new-role" name="role" defaultValue={current}>
          {ROLES.map(([r, label]) => <option key={r} value={r}>{label}</option>)}
        </select>
      </div>
      <button type="submit" disabled={busy}>{busy ? "Saving…" : "Change role"}</button>
    </form>
  );
}

const MODERATION: Record<number, string> = {
  [Pet_Moderation.HELD]: "held", [Pet_Moderation.HIDDEN]: "hidden",
};

export function UserPage({ api, powers, id }: { api: Api; powers: Powers; id: string }) {
  const user = `users/${id}`;
  const record = useLoad(() => api.admin.getUserRecord({ name: `userRecords/${id}` }).then((r) => r.userRecord!), id);
  // Auth's own view: why the account is suspended, and whether its second factor is on.
  const account = useLoad(() => api.auth.getAccount({ name: user }).then((r) => r.account!), id);
  const [notice, setNotice] = useState("");
  const done = (what: string) => () => {
    setNotice(what);
    record.reload();
    account.reload();
  };
  const r = record.data;
  if (!r) {
    return (
      <section>
        <h1 tabIndex={-1}>Account</h1>
        <ProblemBanner problem={record.problem} />
        {record.loading && <p role="status">Loading the account…</p>}
      </section>
    );
  }
  const a = account.data;
  return (
    <section>
      <p><a href="/admin/users" onClick={follow}>← Users</a></p>
      <h1 tabIndex={-1}>{r.displayName || r.user}</h1>
      {notice && <p role="status" className="notice">{notice}</p>}
      <dl className="facts">
        <dt>Account</dt><dd>{r.user}</dd>
        <dt>Email</dt><dd>{r.email}{a && (a.emailVerified ? " (verified)" : " (not verified)")}</dd>
        <dt>Role</dt><dd>{roleName(r.role)}</dd>
        <dt>Status</dt>
        <dd>{statusName(r.status)}{a?.statusReason && <>: “{a.statusReason}”</>}</dd>
        <dt>Second factor</dt><dd>{a ? (a.mfaEnabled ? "on" : "off") : "…"}</dd>
        <dt>Registered</dt><dd>{when(r.createTime)}</dd>
        <dt>Reports about it</dt><dd>{r.reportsReceived}</dd>
        <dt>Reports it made</dt><dd>{r.reportsMade}</dd>
      </dl>
      {r.unavailable.length > 0 && (
        <p role="status" className="banner">Not available right now: {r.unavailable.join(", ")}. Reload to try again.</p>
      )}

      <h2>Cases ({r.cases.length})</h2>
      {r.cases.length === 0 ? <p>No cases.</p> : (
        <ul className="evidence">
          {r.cases.map((c) => (
            <li key={c.name}>
              {powers.moderate ? <a href={`/admin/${c.name}`} onClick={follow}>{c.subject}</a> : c.subject}
              {": "}{stateName(c.state)}{c.resolution ? `, ${actionName(c.resolution).toLowerCase()}` : ""}
              {" "}<span className="muted">opened {when(c.createTime)}</span>
            </li>
          ))}
        </ul>
      )}

      <h2>Listings ({r.listings.length})</h2>
      {r.listings.length === 0 ? <p>No pets listed.</p> : (
        <ul className="evidence">
          {r.listings.map((p) => (
            <li key={p.name}>{p.displayName} <span className="muted">({p.name})</span>
              {MODERATION[p.moderation] && <span className="tag warn">{MODERATION[p.moderation]}</span>}
            </li>
          ))}
        </ul>
      )}

      <h2>Sessions ({r.sessions.length})</h2>
      {r.sessions.length === 0 ? <p>No live sessions.</p> : (
        <table className="grid">
          <caption className="visually-hidden">Live sessions, newest first</caption>
          <thead><tr><th scope="col">Device</th><th scope="col">Method</th><th scope="col">Address</th>
            <th scope="col">Began</th><th scope="col">Last used</th></tr></thead>
          <tbody>
            {r.sessions.map((s) => (
              <tr key={s.name}>
                <th scope="row">{s.userAgent || "unknown device"}</th><td>{s.signInMethod}</td>
                <td>{s.clientAddress}</td><td>{when(s.createTime)}</td><td>{when(s.lastUseTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {powers.moderate && <SetStatus key={r.status} api={api} powers={powers} user={r.user} current={r.status}
                                     onDone={done("The status was changed.")} />}
      {powers.administer && <SetRole key={r.role} api={api} user={r.user} current={r.role}
                                     onDone={done("The role was changed.")} />}
    </section>
  );
}
