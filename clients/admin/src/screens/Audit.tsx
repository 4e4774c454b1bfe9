// The audit log, newest first, and the check of its hash chain (admins only).
import { useState } from "react";
import type { AuditEntry, VerifyAuditLogResponse } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { describe, type Problem } from "@petplatform/kit/errors";
import { ProblemBanner } from "@petplatform/kit/form";
import type { Api } from "../api";
import { kindName, when } from "../labels";
import { useLoad } from "../load";
import { Named, useNames } from "../names";

export function Audit({ api }: { api: Api }) {
  const [more, setMore] = useState<{ entries: AuditEntry[]; token: string }>({ entries: [], token: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const [verdict, setVerdict] = useState<VerifyAuditLogResponse | null>(null);
  const [checking, setChecking] = useState(false);
  const first = useLoad(async () => {
    const r = await api.admin.listAuditEntries({ pageSize: 50 });
    setMore({ entries: [], token: r.nextPageToken });
    return r.auditEntries;
  }, "audit");
  const loadMore = async () => {
    setProblem(null);
    try {
      const r = await api.admin.listAuditEntries({ pageSize: 50, pageToken: more.token });
      setMore((m) => ({ entries: [...m.entries, ...r.auditEntries], token: r.nextPageToken }));
    } catch (e) {
      setProblem(describe(e));
    }
  };
  const verify = async () => {
    setChecking(true);
    setProblem(null);
    setVerdict(null);
    try {
      setVerdict(await api.admin.verifyAuditLog({}));
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setChecking(false);
    }
  };
  const entries = [...(first.data ?? []), ...more.entries];
  const names = useNames(api, entries.map((e) => e.actor));
  return (
    <section>
      <h1 tabIndex={-1}>Audit log</h1>
      <div className="toolbar">
        <button type="button" onClick={verify} disabled={checking}>{checking ? "Checking…" : "Verify the log"}</button>
        <button type="button" className="secondary" onClick={first.reload}>Refresh</button>
      </div>
      {verdict && (
        <p role="status" className={verdict.intact ? "notice" : "banner"}>
          {verdict.intact
            ? `The log is intact: ${verdict.entriesChecked} entries checked, every hash matches.`
            : `The log was tampered with at ${verdict.firstBadEntry}: ${verdict.problem} (${verdict.entriesChecked} entries checked).`}
        </p>
      )}
      <ProblemBanner problem={first.problem ?? problem} />
      {first.loading && !first.data && <p role="status">Loading the log…</p>}
      {entries.length > 0 && (
        <table className="grid">
          <caption className="visually-hidden">Audit entries, newest first</caption>
          <thead>
            <tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Kind</th><th scope="col">Actor</th>
              <th scope="col">Action</th><th scope="col">Target</th><th scope="col">Detail</th></tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.name}>
                <th scope="row" className="num">{String(e.sequence)}</th>
                <td>{when(e.createTime)}</td><td>{kindName(e.kind)}</td><td>{e.actor ? <Named name={e.actor} names={names} /> : "system"}</td>
                <td>{e.action}</td><td className="id">{e.target}</td><td className="detail">{e.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {more.token && <button type="button" className="secondary" onClick={loadMore}>Show older entries</button>}
    </section>
  );
}
