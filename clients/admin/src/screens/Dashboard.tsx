// The platform's daily counts over a range of days (UTC), one small bar chart per measure, in plain SVG, each with
// its numbers as a table for screen readers and for copying.
import { useState, type FormEvent } from "react";
import type { DailyCounts } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import type { Date as PbDate } from "@petplatform/proto/google/type/date_pb";
import { Field, ProblemBanner } from "@petplatform/kit/form";
import type { Api } from "../api";
import { useLoad } from "../load";

type Measure = "signUps" | "listings" | "matches" | "adoptions" | "messages" | "bookings" | "reports" | "fraudCases";
const MEASURES: [Measure, string][] = [
  ["signUps", "Sign-ups"], ["listings", "Pets listed"], ["matches", "Matches"], ["adoptions", "Adoptions"],
  ["messages", "Chat messages"], ["bookings", "Bookings"], ["reports", "Reports"], ["fraudCases", "Fraud cases"],
];

const iso = (d: Date) => d.toISOString().slice(0, 10);
const dayOf = (text: string) => {
  const [year, month, day] = text.split("-").map(Number);
  return { year, month, day };
};
const label = (d: PbDate | undefined) => d ? `${d.year}-${String(d.month).padStart(2, "0")}-${String(d.day).padStart(2, "0")}` : "";

const W = 320, H = 120, PAD_LEFT = 28, PAD_BOTTOM = 18;

function Chart({ days, measure, title }: { days: DailyCounts[]; measure: Measure; title: string }) {
  const values = days.map((d) => Number(d[measure]));
  const max = Math.max(1, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const step = (W - PAD_LEFT) / Math.max(1, values.length);
  const id = `chart-${measure}`;
  return (
    <figure className="chart">
      <figcaption id={id}><strong>{title}</strong>: {total} in {values.length} days, at most {max} a day</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={id} preserveAspectRatio="none">
        <line x1={PAD_LEFT} y1={H - PAD_BOTTOM} x2={W} y2={H - PAD_BOTTOM} className="axis" />
        <text x={PAD_LEFT - 4} y={10} className="tick" textAnchor="end">{max}</text>
        <text x={PAD_LEFT - 4} y={H - PAD_BOTTOM} className="tick" textAnchor="end">0</text>
        {values.map((v, i) => {
          const h = ((H - PAD_BOTTOM - 4) * v) / max;
          return (
            <rect key={i} x={PAD_LEFT + i * step + 1} width={Math.max(1, step - 2)} y={H - PAD_BOTTOM - h} height={h}
                  className="col"><title>{`${label(days[i].date)}: ${v}`}</title></rect>
          );
        })}
        <text x={PAD_LEFT} y={H - 4} className="tick">{label(days[0]?.date)}</text>
        <text x={W} y={H - 4} className="tick" textAnchor="end">{label(days[days.length - 1]?.date)}</text>
      </svg>
    </figure>
  );
}

export function Dashboard({ api }: { api: Api }) {
  const today = new Date();
  const [range, setRange] = useState({ start: iso(new Date(today.getTime() - 29 * 86400_000)), end: iso(today) });
  const loaded = useLoad(() => api.admin.getDashboard({ startDate: dayOf(range.start), endDate: dayOf(range.end) }),
                         `${range.start}/${range.end}`);
  const apply = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setRange({ start: String(form.get("start_date")), end: String(form.get("end_date")) });
  };
  const days = loaded.data?.days ?? [];
  return (
    <section>
      <h1 tabIndex={-1}>Dashboard</h1>
      <form onSubmit={apply} className="toolbar" noValidate aria-label="Days to show">
        <Field label="From (UTC)" field="start_date" problem={loaded.problem} type="date" defaultValue={range.start} required />
        <Field label="To (UTC)" field="end_date" problem={loaded.problem} type="date" defaultValue={range.end} required />
        <button type="submit">Show</button>
      </form>
      <ProblemBanner problem={loaded.problem} />
      {loaded.loading && !loaded.data && <p role="status">Loading the counts…</p>}
      {loaded.data && (
        <>
          <ul className="totals" aria-label="Totals over the range">
            {MEASURES.map(([m, title]) => (
              <li key={m}><span className="total">{Number(loaded.data!.total?.[m] ?? 0)}</span> {title.toLowerCase()}</li>
            ))}
          </ul>
          <div className="charts">
            {MEASURES.map(([m, title]) => <Chart key={m} days={days} measure={m} title={title} />)}
          </div>
          <details>
            <summary>The numbers, day by day</summary>
            <table className="grid">
              <thead>
                <tr><th scope="col">Day</th>{MEASURES.map(([m, title]) => <th key={m} scope="col">{title}</th>)}</tr>
              </thead>
              <tbody>
                {days.map((d) => (
                  <tr key={label(d.date)}>
                    <th scope="row">{label(d.date)}</th>
                    {MEASURES.map(([m]) => <td key={m} className="num">{Number(d[m])}</td>)}
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </section>
  );
}
