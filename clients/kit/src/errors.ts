// google.rpc.Status details (grpc-status-details-bin, decoded by Connect) as sentences a person understands.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "@petplatform/proto/google/rpc/error_details_pb";

export interface Problem {
  /** What went wrong, for the whole form or page. */
  message: string;
  /** Field path (as in the contract, snake_case) -> what is wrong with it, shown next to that field. */
  fields: Record<string, string>;
}

// Reasons (ErrorInfo.reason) whose own wording is better for a person than the service's message.
const BY_REASON: Record<string, string> = {
  INVALID_CREDENTIALS: "That email and password do not match an account. Check them and try again.",
  RATE_LIMITED: "You are going a little fast. Wait a moment and try again.",
  MFA_CODE_INVALID: "That code is not right, or was already used. Enter the current code from your app.",
  MFA_CHALLENGE_INVALID: "This sign-in took too long. Start again with your email and password.",
  ALREADY_EXISTS: "That already exists.",
  NOT_FOUND: "We could not find that. It may have been removed.",
};

const BY_CODE: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Please sign in again.",
  [Code.PermissionDenied]: "You are not allowed to do that.",
  [Code.NotFound]: "We could not find that. It may have been removed.",
  [Code.AlreadyExists]: "That already exists.",
  [Code.ResourceExhausted]: "You are going a little fast. Wait a moment and try again.",
  [Code.Unavailable]: "The service is not reachable right now. Check your connection and try again.",
  [Code.DeadlineExceeded]: "That took too long. Try again.",
  [Code.Internal]: "Something went wrong on our side. Try again in a moment.",
  [Code.Unknown]: "Something went wrong. Try again in a moment.",
};

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : first + ".";
}

function waitHint(err: ConnectError): string {
  const retry = err.findDetails(RetryInfoSchema)[0];
  const seconds = retry?.retryDelay ? Number(retry.retryDelay.seconds) : 0;
  return seconds > 0 ? ` You can try again in ${seconds} second${seconds === 1 ? "" : "s"}.` : "";
}

export function describe(error: unknown): Problem {
  const err = ConnectError.from(error);
  const fields: Record<string, string> = {};
  for (const bad of err.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) fields[v.field] = sentence(v.description);
  }
  if (Object.keys(fields).length > 0) {
    return { message: "Some details need another look: see the highlighted fields.", fields };
  }
  const reason = err.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
  const known = BY_REASON[reason];
  if (known) return { message: known + waitHint(err), fields };
  // A refusal from a service with its own message (a failed precondition, a permission rule) reads well
  // already; for the rest, the code says enough.
  if ((err.code === Code.FailedPrecondition || err.code === Code.PermissionDenied
       || err.code === Code.InvalidArgument) && err.rawMessage) {
    return { message: sentence(err.rawMessage) + waitHint(err), fields };
  }
  return { message: (BY_CODE[err.code] ?? "Something went wrong. Try again in a moment.") + waitHint(err), fields };
}
