// The edge over gRPC-Web (Connect's transport), with the clients the screens use and the signed-in session.
import { createClient, type Client } from "@connectrpc/connect";
import { sessionTransport, SessionStore, type Config, type Provider, type Session } from "@petplatform/kit/session";
import { AuthService } from "@petplatform/proto/petplatform/auth/v1/auth_pb";
import { PetService } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { MatchingService } from "@petplatform/proto/petplatform/matching/v1/matching_pb";
import { ChatService } from "@petplatform/proto/petplatform/chat/v1/chat_pb";
import { NotificationService } from "@petplatform/proto/petplatform/notification/v1/notification_pb";
import { UserService } from "@petplatform/proto/petplatform/user/v1/user_pb";
import { MarketplaceService } from "@petplatform/proto/petplatform/marketplace/v1/marketplace_pb";
import { AdminService } from "@petplatform/proto/petplatform/admin/v1/admin_pb";
import { PaymentService } from "@petplatform/proto/petplatform/payment/v1/payment_pb";

// The session, the transport and the config are shared with the admin panel (@petplatform/kit/session).
export { loadConfig, SESSION_EVENT, sessionOf, userOf, type Config, type Provider, type Session } from "@petplatform/kit/session";

export const sessionStore = new SessionStore("petplatform.session");
export const loadSession = () => sessionStore.load();
export const saveSession = (session: Session | null) => sessionStore.save(session);

export interface Api {
  edgeUrl: string;
  providers: Provider[];
  auth: Client<typeof AuthService>;
  pets: Client<typeof PetService>;
  matching: Client<typeof MatchingService>;
  chat: Client<typeof ChatService>;
  notifications: Client<typeof NotificationService>;
  users: Client<typeof UserService>;
  market: Client<typeof MarketplaceService>;
  payments: Client<typeof PaymentService>;
  /** CreateReport only: the rest of the admin service is the admin panel's. */
  admin: Client<typeof AdminService>;
}

export function makeApi({ edgeUrl: baseUrl, providers }: Config): Api {
  const transport = sessionTransport({ baseUrl, store: sessionStore, refreshToken: (refreshToken) => auth.refreshToken({ refreshToken }) });
  const auth = createClient(AuthService, transport);
  return {
    edgeUrl: baseUrl, providers, auth, pets: createClient(PetService, transport),
    matching: createClient(MatchingService, transport), chat: createClient(ChatService, transport),
    notifications: createClient(NotificationService, transport), users: createClient(UserService, transport),
    market: createClient(MarketplaceService, transport), payments: createClient(PaymentService, transport),
    admin: createClient(AdminService, transport),
  };
}

/** A photo's address as the browser loads it: the edge gives absolute URLs, a relative one is the edge's. */
export function photoUrl(api: Api, uri: string): string {
  return new URL(uri, api.edgeUrl + "/").toString();
}
