// Form pieces that keep labels, errors and focus together, so every screen is accessible the same way.
import { useId, type InputHTMLAttributes, type ReactNode, type TextareaHTMLAttributes } from "react";
import type { Problem } from "./errors";

type FieldProps = InputHTMLAttributes<HTMLInputElement> & {
  label: string;
  /** The contract's field path (snake_case): where the edge's field violations for this input are found. */
  field: string;
  problem: Problem | null;
  hint?: ReactNode;
};

export function Field({ label, field, problem, hint, ...input }: FieldProps) {
  const id = useId();
  const error = problem?.fields[field];
  const described = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ");
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      {hint && <p id={`${id}-hint`} className="hint">{hint}</p>}
      <input id={id} name={field} aria-invalid={error ? true : undefined}
             aria-describedby={described || undefined} {...input} />
      {error && <p id={`${id}-error`} className="error-text">{error}</p>}
    </div>
  );
}

type AreaProps = TextareaHTMLAttributes<HTMLTextAreaElement> & {
  label: string;
  field: string;
  problem: Problem | null;
  hint?: ReactNode;
};

/** Field's multi-line sibling (a reason, a description), with the same label, hint and error wiring. */
export function Area({ label, field, problem, hint, ...area }: AreaProps) {
  const id = useId();
  const error = problem?.fields[field];
  const described = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ");
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      {hint && <p id={`${id}-hint`} className="hint">{hint}</p>}
      <textarea id={id} name={field} aria-invalid={error ? true : undefined}
                aria-describedby={described || undefined} {...area} />
      {error && <p id={`${id}-error`} className="error-text">{error}</p>}
    </div>
  );
}

/** The form-level message: announced when it appears (role=alert). */
export function ProblemBanner({ problem }: { problem: Problem | null }) {
  if (!problem) return null;
  const unplaced = Object.entries(problem.fields);
  return (
    <div role="alert" className="banner">
      <p>{problem.message}</p>
      {unplaced.length > 0 && (
        <ul>
          {unplaced.map(([field, text]) => <li key={field}>{labelOf(field)}: {text}</li>)}
        </ul>
      )}
    </div>
  );
}

/** "display_name" -> "Display name", "pet.location.latitude" -> "Latitude": for the summary list. */
export function labelOf(field: string): string {
  const last = field.split(".").pop()!.replace(/_/g, " ");
  return last[0].toUpperCase() + last.slice(1);
}
