// Words for the contract's enums and times, as staff read them.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AuditEntry_Kind, Case_State, ReportReason } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { ModerationActionTaken_Action as Action } from "@petplatform/proto/petplatform/admin/v1/events_pb";
import { AccountStatus, Role } from "@petplatform/proto/petplatform/auth/v1/auth_pb";

export function when(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" }) : "";
}

export const STATES: [Case_State, string][] = [
  [Case_State.OPEN, "Open"], [Case_State.IN_REVIEW, "In review"], [Case_State.RESOLVED, "Resolved"],
];
export const stateName = (s: Case_State) => STATES.find(([v]) => v === s)?.[1] ?? "Unknown";

const REASONS: Record<number, string> = {
  [ReportReason.SCAM]: "Scam", [ReportReason.SPAM]: "Spam", [ReportReason.HARASSMENT]: "Harassment",
  [ReportReason.INAPPROPRIATE]: "Inappropriate", [ReportReason.ANIMAL_WELFARE]: "Animal welfare",
  [ReportReason.MISLEADING]: "Misleading", [ReportReason.OTHER]: "Other",
};
export const reasonName = (r: ReportReason) => REASONS[r] ?? "Unspecified";

const ACTIONS: Record<number, string> = {
  [Action.DISMISS]: "Dismiss", [Action.WARN]: "Warn the user", [Action.HIDE_LISTING]: "Hide the listing",
  [Action.HOLD_LISTING]: "Hold the listing", [Action.SUSPEND_USER]: "Suspend the account",
  [Action.BAN_USER]: "Ban the account",
};
export const actionName = (a: Action) => ACTIONS[a] ?? "None";

/** The decisions a moderator may take on a subject: hiding only applies to a pet listing. */
export function decisionsFor(subject: string): Action[] {
  return [Action.DISMISS, Action.WARN, ...(subject.startsWith("pets/") ? [Action.HIDE_LISTING] : []),
          Action.SUSPEND_USER, Action.BAN_USER];
}

export const ROLES: [Role, string][] = [
  [Role.USER, "User"], [Role.SUPPORT, "Support"], [Role.MODERATOR, "Moderator"], [Role.ADMIN, "Admin"],
];
export const roleName = (r: Role) => ROLES.find(([v]) => v === r)?.[1] ?? "Unknown";

export const STATUSES: [AccountStatus, string][] = [
  [AccountStatus.ACTIVE, "Active"], [AccountStatus.SUSPENDED, "Suspended"], [AccountStatus.BANNED, "Banned"],
];
export const statusName = (s: AccountStatus) => STATUSES.find(([v]) => v === s)?.[1] ?? "Unknown";

const KINDS: Record<number, string> = {
  [AuditEntry_Kind.STAFF_ACTION]: "Staff action", [AuditEntry_Kind.SECURITY_EVENT]: "Security event",
  [AuditEntry_Kind.ROLE_CHANGED]: "Role changed", [AuditEntry_Kind.STATUS_CHANGED]: "Status changed",
  [AuditEntry_Kind.AUTOMATIC_ACTION]: "Automatic action",
};
export const kindName = (k: AuditEntry_Kind) => KINDS[k] ?? "Other";

/** `users/abc` -> the panel's page for that account. */
export function userPath(user: string): string {
  return `/admin/users/${user.split("/")[1] ?? ""}`;
}
