// The edge over gRPC-Web (the kit's transport with this panel's own session), and what the signed-in staff
// member may do.
import { createClient, type Client } from "@connectrpc/connect";
import { claimsOf, sessionTransport, SessionStore, type Config, type Session } from "@petplatform/kit/session";
import { AdminService } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { AuthService } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { PetService } from "@petplatform/proto/petplatform/pet/v1/pet_pb";

// Not the web app's key: both are served from one origin, and a tab signed in to one is not signed in to the other.
export const sessionStore = new SessionStore("petplatform.admin.session");
export const loadSession = () => sessionStore.load();
export const saveSession = (session: Session | null) => sessionStore.save(session);

export interface Api {
  admin: Client<typeof AdminService>;
  auth: Client<typeof AuthService>;
  pets: Client<typeof PetService>;
}

export function makeApi({ edgeUrl: baseUrl }: Config): Api {
  const transport = sessionTransport({ baseUrl, store: sessionStore, refreshToken: (refreshToken) => auth.refreshToken({ refreshToken }) });
  const auth = createClient(AuthService, transport);
  return { admin: createClient(AdminService, transport), auth, pets: createClient(PetService, transport) };
}

export type Role = "support" | "moderator" | "admin";

/** What a signed-in account may do here, mirroring the contract's access levels (ACCESS_SUPPORT, ACCESS_MODERATOR,
 * ACCESS_ADMIN). The server decides; the panel only hides what would be refused. Staff act as staff only after a
 * second factor (`mfa` in the token's amr): without one the account is a plain user to every service. */
export interface Powers {
  role: Role | null;
  /** Signed in with the second factor. */
  mfa: boolean;
  /** Reads the dashboard and accounts (support and up). */
  read: boolean;
  /** Works the moderation queue, decides cases, suspends accounts (moderators and admins). */
  moderate: boolean;
  /** Reverses decisions, reads the audit log, sets roles, lifts bans (admins). */
  administer: boolean;
}

const RANK: Record<Role, number> = { support: 1, moderator: 2, admin: 3 };

export function powersOf(session: Session | null): Powers {
  const claims = session ? claimsOf(session) : {};
  const role = claims.role && claims.role in RANK ? (claims.role as Role) : null;
  const mfa = (claims.amr ?? []).includes("mfa");
  const rank = role && mfa ? RANK[role] : 0;
  return { role, mfa, read: rank >= 1, moderate: rank >= 2, administer: rank >= 3 };
}
