"""Every service of the mesh, once. Everything that lists services reads this: the CLI's targets,
the server, peer addresses, the edge's routes, health and reflection, `make envoy`, the AsyncAPI
document and the tests. Adding a service is its proto, its package and one entry here."""
from __future__ import annotations

from mesh.registry import Registry, ServiceSpec
from petplatform.admin.v1 import admin_pb2  # noqa: F401  (registers the contract for the registry's check)
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2  # noqa: F401
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.chat.v1 import chat_pb2  # noqa: F401
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.fraud.v1 import fraud_pb2  # noqa: F401
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.marketplace.v1 import events_pb2 as marketplace_events
from petplatform.marketplace.v1 import marketplace_pb2  # noqa: F401
from petplatform.matching.v1 import matching_pb2  # noqa: F401
from petplatform.payment.v1 import events_pb2 as payment_events
from petplatform.payment.v1 import payment_pb2  # noqa: F401
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2  # noqa: F401
from petplatform.recommender.v1 import recommender_pb2  # noqa: F401
from petplatform.user.v1 import events_pb2 as user_events
from petplatform.user.v1 import user_pb2  # noqa: F401
from petplatform.notification.v1 import events_pb2 as notification_events
from petplatform.notification.v1 import notification_pb2  # noqa: F401

REGISTRY = Registry([
    ServiceSpec(
        name="auth", module="services.auth.module:AuthModule", port=3001,
        contracts=("petplatform.auth.v1.AuthService",),
        emits=(auth_events.UserCreated, auth_events.UserEmailVerified, event_pb2.EmailRequested,
               auth_events.UserRoleChanged, auth_events.UserStatusChanged, auth_events.SecurityEventRecorded),
        consumes=(auth_events.UserCreated, event_pb2.EmailRequested,
                  admin_events.ModerationActionTaken),  # suspensions and bans decided in cases
    ),
    ServiceSpec(
        name="user", module="services.user.module:UserModule", port=3002,
        contracts=("petplatform.user.v1.UserService",), peers=("auth",),
        consumes=(auth_events.UserCreated, auth_events.UserEmailVerified, user_events.UserReported,
                  marketplace_events.BookingReviewPublished),  # businesses' ratings of owners: trust
    ),
    ServiceSpec(
        name="pet", module="services.pet.module:PetModule", port=3003,
        contracts=("petplatform.pet.v1.PetService",),
        peers=("auth", "fraud"),  # fraud: listings screened before publishing (services/pet/screening.py)
        emits=(pet_events.PetCreated, pet_events.PetUpdated, pet_events.PetDeleted),
        consumes=(pet_events.PetCreated, pet_events.PetUpdated, pet_events.PetDeleted,  # WatchPets, live
                  matching_events.AdoptionCompleted,  # the pet becomes adopted
                  admin_events.ModerationActionTaken,  # listings held or hidden
                  auth_events.UserStatusChanged),  # a suspended owner's listings held
    ),
    ServiceSpec(
        name="matching", module="services.matching.module:MatchingModule", port=3004,
        contracts=("petplatform.matching.v1.MatchingService",), peers=("auth", "user", "recommender"),
        emits=(matching_events.SwipeRecorded, matching_events.SwipeUndone, matching_events.InterestChanged,
               matching_events.MatchCreated, matching_events.MatchEnded, matching_events.UserBlocked,
               matching_events.AdoptionCompleted),
        consumes=(pet_events.PetCreated, pet_events.PetUpdated, pet_events.PetDeleted),  # its copy of the pets
    ),
    ServiceSpec(
        name="chat", module="services.chat.module:ChatModule", port=3005,
        contracts=("petplatform.chat.v1.ChatService",), peers=("auth",),
        emits=(chat_events.MessageSent, chat_events.MessageDeleted, chat_events.MessagesRead),
        consumes=(matching_events.MatchCreated, matching_events.MatchEnded, matching_events.UserBlocked),
    ),
    ServiceSpec(
        name="marketplace", module="services.marketplace.module:MarketplaceModule", port=3006,
        contracts=("petplatform.marketplace.v1.MarketplaceService",), peers=("auth", "pet"),
        emits=(marketplace_events.BookingRequested, marketplace_events.BookingAccepted,
               marketplace_events.BookingDeclined, marketplace_events.BookingExpired,
               marketplace_events.BookingCancelled, marketplace_events.BookingCompleted,
               marketplace_events.BookingReviewPublished,
               marketplace_events.BusinessPayoutAccountChanged,  # payments: payouts go to the new account
               marketplace_events.BusinessDeleted),
        consumes=(payment_events.PaymentProcessed, payment_events.PaymentFailed,  # the booking's payment status
                  payment_events.PaymentActionRequired, payment_events.RefundProcessed),
    ),
    ServiceSpec(
        name="payment", module="services.payment.module:PaymentModule", port=3009,
        contracts=("petplatform.payment.v1.PaymentService",), peers=("auth",),
        emits=(payment_events.PaymentProcessed, payment_events.PaymentFailed, payment_events.PaymentActionRequired,
               payment_events.RefundProcessed, payment_events.PayoutSent, payment_events.PayoutFailed),
        consumes=(marketplace_events.BookingAccepted, marketplace_events.BookingCancelled,  # charges, refunds
                  marketplace_events.BookingCompleted,  # and payouts of bookings
                  marketplace_events.BusinessPayoutAccountChanged),  # payouts not yet sent, returned ones
    ),
    ServiceSpec(
        name="recommender", module="ml.recommender.module:RecommenderModule", port=8000,
        contracts=("petplatform.recommender.v1.RecommenderService",), peers=("auth",),
        consumes=(pet_events.PetCreated, pet_events.PetUpdated, pet_events.PetDeleted,
                  matching_events.SwipeRecorded, matching_events.SwipeUndone, matching_events.MatchCreated,
                  matching_events.AdoptionCompleted),
    ),
    ServiceSpec(
        name="fraud", module="ml.fraud.module:FraudModule", port=8001,
        contracts=("petplatform.fraud.v1.FraudService",), peers=("auth",),
        emits=(fraud_events.FraudDetected,),
        consumes=(auth_events.UserCreated, pet_events.PetCreated, pet_events.PetUpdated,  # signals
                  pet_events.PetDeleted, chat_events.MessageSent,
                  marketplace_events.BookingCancelled,  # cancellations and failed charges
                  admin_events.ModerationActionTaken),  # moderators' decisions: the labels
    ),
    ServiceSpec(
        name="notification", module="services.notification.module:NotificationModule", port=3008,
        contracts=("petplatform.notification.v1.NotificationService",), peers=("auth",),
        emits=(notification_events.NotificationRequested, event_pb2.EmailRequested),
        consumes=(chat_events.MessageSent, matching_events.MatchCreated, matching_events.AdoptionCompleted,
                  auth_events.UserCreated, notification_events.NotificationRequested,
                  admin_events.ModerationActionTaken, auth_events.UserStatusChanged,  # the affected user told
                  payment_events.PayoutFailed),  # the business's owner told
    ),
    ServiceSpec(
        name="admin", module="services.admin.module:AdminModule", port=3007,
        contracts=("petplatform.admin.v1.AdminService",),
        peers=("auth", "marketplace", "pet"),  # a business's owner; a user record's sessions and pets
        emits=(admin_events.ModerationActionTaken, user_events.UserReported),
        consumes=(auth_events.UserCreated, auth_events.UserRoleChanged, auth_events.UserStatusChanged,  # records,
                  auth_events.SecurityEventRecorded,  # the audit log
                  pet_events.PetCreated, chat_events.MessageSent,  # who is behind a report; and daily counts of
                  matching_events.MatchCreated, matching_events.AdoptionCompleted, marketplace_events.BookingRequested,
                  fraud_events.FraudDetected),  # cases and the automatic hold
    ),
])
