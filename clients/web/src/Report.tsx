// "Report": a person tells the moderators about a listing, a chat message or a business (admin's CreateReport).
import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { ReportReason } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import type { Api } from "./api";
import { describe, type Problem } from "./errors";
import { Area, ProblemBanner } from "./Form";

const REASONS: [ReportReason, string][] = [
  [ReportReason.SCAM, "Scam or fake listing (e.g. pay outside the platform)"],
  [ReportReason.SPAM, "Spam or advertising"],
  [ReportReason.HARASSMENT, "Harassment or abuse"],
  [ReportReason.INAPPROPRIATE, "Offensive or inappropriate"],
  [ReportReason.ANIMAL_WELFARE, "An animal at risk, or sold against the rules"],
  [ReportReason.MISLEADING, "False or misleading"],
  [ReportReason.OTHER, "Something else (say what below)"],
];

// CreateReport's limit on `details`.
const MAX_DETAILS = 2000;

/** A "Report" button opening a modal dialog (Escape closes it, focus stays inside) with a reason and details.
 * `subject` is the contract's resource name; `what` names it for the person ("this listing"). */
export function Report({ api, subject, what }: { api: Api; subject: string; what: string }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const id = useId();
  const [reason, setReason] = useState(ReportReason.UNSPECIFIED);
  const [details, setDetails] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [sending, setSending] = useState(false);
  const [done, setDone] = useState(false);

  useEffect(() => () => dialog.current?.close(), []);

  const open = () => {
    setProblem(null);
    setDone(false);
    dialog.current?.showModal();
  };

  const send = async (event: FormEvent) => {
    event.preventDefault();
    if (reason === ReportReason.UNSPECIFIED) {
      setProblem({ message: "Choose a reason first.", fields: { "report.reason": "Choose the reason closest to what happened." } });
      return;
    }
    setProblem(null);
    setSending(true);
    try {
      await api.admin.createReport({ report: { subject, reason, details: details.trim() } });
      setDone(true);
      setReason(ReportReason.UNSPECIFIED);
      setDetails("");
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setSending(false);
    }
  };

  // Field paths as CreateReport's violations name them.
  const reasonError = problem?.fields["report.reason"];
  return (
    <>
      <button type="button" className="secondary report" onClick={open} aria-haspopup="dialog">Report</button>
      <dialog ref={dialog} className="report-dialog" aria-labelledby={`${id}-title`}
              onClose={() => setProblem(null)}>
        <h2 id={`${id}-title`}>Report {what}</h2>
        {done ? (
          <>
            <p role="status" className="banner ok">Thanks, our moderators will look at it.</p>
            <button type="button" autoFocus onClick={() => dialog.current?.close()}>Close</button>
          </>
        ) : (
          <form onSubmit={(e) => void send(e)} noValidate>
            <ProblemBanner problem={problem} />
            <div className={reasonError ? "field invalid" : "field"}>
              <label htmlFor={`${id}-reason`}>Reason</label>
              <select id={`${id}-reason`} name="report.reason" value={reason} autoFocus
                      aria-invalid={reasonError ? true : undefined}
                      aria-describedby={reasonError ? `${id}-reason-error` : undefined}
                      onChange={(e) => { setReason(Number(e.target.value) as ReportReason); setProblem(null); }}>
                <option value={ReportReason.UNSPECIFIED}>Choose a reason…</option>
                {REASONS.map(([v, label]) => <option key={v} value={v}>{label}</option>)}
              </select>
              {reasonError && <p id={`${id}-reason-error`} className="error-text">{reasonError}</p>}
            </div>
            <Area label="Details (optional)" field="report.details" problem={problem}
                  hint={`What happened, in your words: up to ${MAX_DETAILS} characters. Only the moderators see it.`}
                  value={details} maxLength={MAX_DETAILS} rows={4} onChange={(e) => setDetails(e.target.value)} />
            <div className="actions">
              <button type="submit" disabled={sending}>{sending ? "Sending…" : "Send report"}</button>
              <button type="button" className="secondary" onClick={() => dialog.current?.close()}>Cancel</button>
            </div>
          </form>
        )}
      </dialog>
    </>
  );
}
