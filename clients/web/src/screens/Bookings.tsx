// Bookings from both sides: the pets' owner (cancel with the policy's refund, confirm a charge with their bank,
// review the business) and the business (accept, decline, start, complete, review the owner).
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Booking_Canceller, Booking_PaymentStatus, Booking_State, CancellationPolicy, type Booking, type BookingReview,
} from "@petplatform/proto/petplatform/marketplace/v1/marketplace_pb";
import { Payment_Kind, Payment_State, type Payment } from "@petplatform/proto/petplatform/payment/v1/payment_pb";
import type { Api } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { useNames } from "../names";
import { follow } from "../router";
import { BOOKING_STATE, money, slotText } from "./Businesses";

type Money = NonNullable<Booking["price"]>;

const PAYMENT: Record<number, string> = {
  [Booking_PaymentStatus.PENDING]: "Charging your card…", [Booking_PaymentStatus.PAID]: "Paid",
  [Booking_PaymentStatus.FAILED]: "The card was declined", [Booking_PaymentStatus.REFUNDED]: "Refunded in full",
  [Booking_PaymentStatus.PARTIALLY_REFUNDED]: "Partly refunded",
  [Booking_PaymentStatus.REQUIRES_ACTION]: "Waiting for your bank's confirmation",
};

/** The wall-clock parts of an instant in a time zone. */
function partsIn(date: Date, timeZone: string): { y: number; m: number; d: number; h: number; min: number } {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", hourCycle: "h23",
  }).formatToParts(date).map((p) => [p.type, Number(p.value)]));
  return { y: parts.year, m: parts.month, d: parts.day, h: parts.hour, min: parts.minute };
}

/** 12:00 in `timeZone`, `days` before the local day of `start` (services/marketplace/calendar.py's noon_before). */
function noonBefore(start: Date, timeZone: string, days: number): Date {
  const local = partsIn(start, timeZone);
  const wanted = Date.UTC(local.y, local.m - 1, local.d - days, 12, 0);
  // The zone's offset at that moment, read back from the wall clock it shows.
  const seen = partsIn(new Date(wanted), timeZone);
  const offset = Date.UTC(seen.y, seen.m - 1, seen.d, seen.h, seen.min) - wanted;
  return new Date(wanted - offset);
}

/** Until when cancelling refunds in full, as services/marketplace/policy.py decides it. */
function cutoff(b: Booking): Date {
  const start = timestampDate(b.startTime!);
  if (b.cancellationPolicy === CancellationPolicy.MODERATE) return noonBefore(start, b.timeZone, 1);
  if (b.cancellationPolicy === CancellationPolicy.STRICT) return noonBefore(start, b.timeZone, 7);
  return start;
}

const POLICY: Record<number, string> = {
  [CancellationPolicy.FLEXIBLE]: "Flexible: a full refund until the start",
  [CancellationPolicy.MODERATE]: "Moderate: a full refund until noon the day before",
  [CancellationPolicy.STRICT]: "Strict: a full refund until noon seven days before",
};

function halfBack(price: Money): Money {
  const minor = Number(price.units) * 100 + Math.round(price.nanos / 1e7);
  const back = minor - Math.floor(minor / 2); // an odd minor unit goes to the owner
  return { ...price, units: BigInt(Math.floor(back / 100)), nanos: (back % 100) * 1e7 };
}

/** What the owner gets back if they cancel now, in a sentence. */
export function refundText(b: Booking, now = new Date()): string {
  if (b.paymentStatus !== Booking_PaymentStatus.PAID) return "You have not been charged, so nothing is refunded.";
  const until = cutoff(b);
  const when = slotText(timestampFromDate(until), b.timeZone);
  if (now < until) return `You get ${money(b.price)} back in full (full refund until ${when}).`;
  return `It is after ${when}, so you get half back: ${money(halfBack(b.price!))} of ${money(b.price)}.`;
}

function Stars({ rating }: { rating: number }) {
  return <span aria-label={`${rating} of 5 stars`}>{"★".repeat(rating)}{"☆".repeat(5 - rating)}</span>;
}

/** The reviews of a completed booking: writing one's own, and the double-blind rule said plainly. */
function Reviews({ api, booking, side, other }: { api: Api; booking: Booking; side: "owner" | "business"; other: string }) {
  const [reviews, setReviews] = useState<BookingReview[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const load = useCallback(async () => {
    try {
      setReviews((await api.market.listBookingReviews({ parent: booking.name })).reviews);
    } catch (e) {
      setProblem(describe(e));
    }
  }, [api, booking.name]);
  useEffect(() => void load(), [load]);

  const mine = reviews?.find((r) => r.name.endsWith(`/reviews/${side}`));
  const theirs = reviews?.find((r) => !r.name.endsWith(`/reviews/${side}`));
  const deadline = booking.reviewDeadline ? timestampDate(booking.reviewDeadline) : null;
  const open = deadline !== null && deadline > new Date();
  const deadlineText = deadline ? deadline.toLocaleDateString() : "";

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setProblem(null);
    try {
      await api.market.createBookingReview({
        parent: booking.name, requestId: crypto.randomUUID(),
        review: { rating: Number(form.get("rating") ?? 0), text: String(form.get("text") ?? "").trim() },
      });
      await load();
    } catch (e) {
      setProblem(describe(e));
    }
  };

  if (reviews === null) return problem ? <ProblemBanner problem={problem} /> : null;
  const ratingError = problem?.fields["review.rating"];
  return (
    <div className="reviews">
      {mine ? (
        <p>
          <strong>Your review:</strong> <Stars rating={mine.rating} /> {mine.text}
          {!mine.published && (
            <span className="muted"> · {other} will see it once they have reviewed you too, or on {deadlineText}{" "}
              when reviewing closes. Until then you cannot see theirs either.</span>
          )}
        </p>
      ) : open ? (
        <form className="review-form" onSubmit={(e) => void submit(e)} aria-label={`Review ${other}`}>
          <ProblemBanner problem={problem} />
          <fieldset aria-invalid={ratingError ? true : undefined}>
            <legend>How was {other}?</legend>
            <div className="stars">
              {[1, 2, 3, 4, 5].map((n) => (
                <label key={n}><input type="radio" name="rating" value={n} required /> {n} star{n === 1 ? "" : "s"}</label>
              ))}
            </div>
            {ratingError && <p className="error-text">{ratingError}</p>}
          </fieldset>
          <div className="field">
            <label htmlFor={`text-${booking.name}`}>Your review</label>
            <p className="hint" id={`hint-${booking.name}`}>
              Double-blind: {other} sees it once they have reviewed you too, or when reviewing closes on {deadlineText}.
            </p>
            <textarea id={`text-${booking.name}`} name="text" rows={3} maxLength={2000}
                      aria-describedby={`hint-${booking.name}`} />
          </div>
          <button type="submit">Publish review</button>
        </form>
      ) : <p className="muted">Reviewing closed on {deadlineText}.</p>}
      {theirs && (
        <p><strong>{other}'s review of you:</strong> <Stars rating={theirs.rating} /> {theirs.text}</p>
      )}
    </div>
  );
}

// While the payer confirms at their bank (another tab), the booking is looked at this often.
const BANK_POLL_MS = 2000;

/** A charge the bank wants confirmed (3-D Secure): the payment contract's next action (action_url, from
 * ListPayments: only the payer sees it), opened in a new tab; the booking is watched until the bank's answer
 * (the provider's webhook) has moved it. */
function ConfirmPayment({ api, booking, onDone }: { api: Api; booking: Booking; onDone: () => void }) {
  const [charge, setCharge] = useState<Payment | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [waiting, setWaiting] = useState(false);
  useEffect(() => {
    api.payments.listPayments({ booking: booking.name }).then(
      (r) => setCharge(r.payments.find((p) => p.kind === Payment_Kind.CHARGE
                                            && p.state === Payment_State.REQUIRES_ACTION) ?? null),
      (e) => setProblem(describe(e)));
  }, [api, booking.name]);
  useEffect(() => {
    if (!waiting) return;
    const timer = setInterval(() => {
      api.market.getBooking({ name: booking.name }).then((r) => {
        if (r.booking && r.booking.paymentStatus !== Booking_PaymentStatus.REQUIRES_ACTION) onDone();
      }, () => { /* asked again on the next tick */ });
    }, BANK_POLL_MS);
    return () => clearInterval(timer);
  }, [api, booking.name, waiting, onDone]);
  return (
    <div className="banner action" role="group" aria-label="Payment to confirm">
      <p><strong>Your bank asks you to confirm this payment of {money(booking.price)}.</strong> The booking
        stays yours while you do.</p>
      <ProblemBanner problem={problem} />
      {charge?.actionUrl ? (
        <p><a className="button" href={charge.actionUrl} target="_blank" rel="noopener"
              onClick={() => setWaiting(true)}>Confirm with your bank</a>{" "}
          <span className="muted" aria-live="polite">{waiting ? "Waiting for your bank's answer…"
            : "(opens your bank's page in a new tab)"}</span></p>
      ) : charge ? (
        <p className="muted">Open your bank's app to confirm it (reference {charge.providerReference}).</p>
      ) : null}
    </div>
  );
}

/** Cancelling, by the owner: the refund the policy gives is said before they confirm. */
function Cancel({ api, booking, onDone }: { api: Api; booking: Booking; onDone: (refund: string) => void }) {
  const [asking, setAsking] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const cancel = async () => {
    setProblem(null);
    try {
      const refund = refundText(booking); // the refund itself follows (payment_status moves when it is done)
      await api.market.cancelBooking({ name: booking.name, requestId: crypto.randomUUID() });
      setAsking(false);
      onDone(refund);
    } catch (e) {
      setProblem(describe(e));
    }
  };
  if (!asking) {
    return <button type="button" className="secondary" onClick={() => setAsking(true)}>Cancel booking…</button>;
  }
  return (
    <div className="confirm" role="group" aria-label="Cancel this booking">
      <ProblemBanner problem={problem} />
      <p>{POLICY[booking.cancellationPolicy] ?? ""}. {refundText(booking)}</p>
      <span className="actions">
        <button type="button" onClick={() => void cancel()}>Yes, cancel it</button>
        <button type="button" className="secondary" onClick={() => setAsking(false)}>Keep it</button>
      </span>
    </div>
  );
}

function outcome(b: Booking): string {
  if (b.state !== Booking_State.CANCELLED) return "";
  const who = b.cancelledBy === Booking_Canceller.OWNER ? "by you" : b.cancelledBy === Booking_Canceller.BUSINESS
    ? "by the business" : "because the charge failed";
  const back = b.refunded && (b.refunded.units || b.refunded.nanos) ? `; ${money(b.refunded)} refunded` : "";
  return ` (cancelled ${who}${back})`;
}

// A charge or refund under way (the provider has not answered yet) is looked at again this often.
const SETTLING_POLL_MS = 2000;

/** Reads the list again while a charge or refund is under way, so "paid" shows without a reload. */
function useChargesSettling(bookings: Booking[] | null, load: () => void): void {
  const settling = (bookings ?? []).some((b) => b.paymentStatus === Booking_PaymentStatus.PENDING
    || (b.state === Booking_State.CANCELLED && b.paymentStatus === Booking_PaymentStatus.PAID)); // refund under way
  useEffect(() => {
    if (!settling) return;
    const timer = setTimeout(load, SETTLING_POLL_MS);
    return () => clearTimeout(timer);
  }, [settling, bookings, load]);
}

/** The person's bookings, newest first, with what they can do about each. */
export function Bookings({ api }: { api: Api }) {
  const [bookings, setBookings] = useState<Booking[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");
  const load = useCallback(() => {
    api.market.listBookings({ pageSize: 50 }).then((r) => setBookings(r.bookings), (e) => setProblem(describe(e)));
  }, [api]);
  useEffect(load, [load]);
  useChargesSettling(bookings, load);
  const names = useNames(api, (bookings ?? []).flatMap((b) => [...b.pets, b.service, b.business]));
  const cancelled = (refund: string) => {
    setStatus(`The booking is cancelled. ${refund}`);
    load();
  };
  return (
    <section>
      <h1 tabIndex={-1}>Your bookings</h1>
      <ProblemBanner problem={problem} />
      <p role="status" className="status">{status}</p>
      {bookings === null ? <p aria-live="polite">Loading…</p> : bookings.length === 0 ? (
        <p>No bookings yet. <a href="/businesses" onClick={follow}>Find a pet service nearby</a>.</p>
      ) : (
        <ul className="rows booking-rows" aria-label="Your bookings">
          {bookings.map((b) => {
            const service = names[b.service] ?? "A service";
            const cancellable = b.state === Booking_State.REQUESTED || b.state === Booking_State.ACCEPTED;
            return (
              <li key={b.name}>
                <span>
                  <strong>{service}, {slotText(b.startTime, b.timeZone)}</strong>
                  <span className="muted"> · {b.pets.map((p) => names[p] ?? "a pet").join(", ")} · {money(b.price)}
                    {PAYMENT[b.paymentStatus] && ` · ${PAYMENT[b.paymentStatus]}`}</span>
                </span>
                <span>{BOOKING_STATE[b.state] ?? ""}{outcome(b)}</span>
                {b.paymentStatus === Booking_PaymentStatus.REQUIRES_ACTION && (
                  <ConfirmPayment api={api} booking={b} onDone={load} />
                )}
                {cancellable && <Cancel api={api} booking={b} onDone={cancelled} />}
                {b.state === Booking_State.COMPLETED && (
                  <Reviews api={api} booking={b} side="owner" other={names[b.business] ?? "the business"} />
                )}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

type Step = "accept" | "decline" | "start" | "complete" | "cancel";
const STEP_DONE: Record<Step, string> = {
  accept: "Accepted: the owner is being charged.", decline: "Declined: the time is free again.",
  start: "Started.", complete: "Completed: the payout follows after the hold.",
  cancel: "Cancelled: the owner gets a full refund.",
};

/** What a business's owner does with the bookings of their businesses. */
export function IncomingBookings({ api }: { api: Api }) {
  const [bookings, setBookings] = useState<Booking[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");
  const load = useCallback(() => {
    api.market.listBookings({ business: "businesses/-", pageSize: 50 }).then(
      (r) => setBookings(r.bookings), (e) => setProblem(describe(e)));
  }, [api]);
  useEffect(load, [load]);
  useChargesSettling(bookings, load);
  const names = useNames(api, (bookings ?? []).flatMap((b) => [...b.pets, b.owner, b.service]));

  const act = async (b: Booking, step: Step) => {
    setProblem(null);
    setStatus("");
    const request = { name: b.name, requestId: crypto.randomUUID() };
    try {
      if (step === "accept") await api.market.acceptBooking(request);
      else if (step === "decline") await api.market.declineBooking(request);
      else if (step === "start") await api.market.startBooking(request);
      else if (step === "complete") await api.market.completeBooking(request);
      else await api.market.cancelBooking(request);
      setStatus(STEP_DONE[step]);
      load();
    } catch (e) {
      setProblem(describe(e));
    }
  };
  const button = (b: Booking, step: Step, label: string, secondary = false) => (
    <button type="button" className={secondary ? "secondary" : undefined} onClick={() => void act(b, step)}
            aria-label={`${label}: ${names[b.owner] ?? "the owner"}, ${slotText(b.startTime, b.timeZone)}`}>{label}</button>
  );

  return (
    <section>
      <h1 tabIndex={-1}>Your business's bookings</h1>
      <ProblemBanner problem={problem} />
      <p role="status" className="status">{status}</p>
      {bookings === null ? <p aria-live="polite">Loading…</p> : bookings.length === 0 ? (
        <p>No bookings for your businesses yet.</p>
      ) : (
        <ul className="rows booking-rows" aria-label="Incoming bookings">
          {bookings.map((b) => {
            const who = names[b.owner] ?? "An owner";
            const paid = b.paymentStatus === Booking_PaymentStatus.PAID;
            return (
              <li key={b.name}>
                <span>
                  <strong>{who}: {names[b.service] ?? "a service"}, {slotText(b.startTime, b.timeZone)}</strong>
                  <span className="muted"> · {b.pets.map((p) => names[p] ?? "a pet").join(", ")} · {money(b.price)}
                    {b.note && ` · “${b.note}”`}</span>
                </span>
                <span>{BOOKING_STATE[b.state] ?? ""}{b.state !== Booking_State.ACCEPTED || paid ? ""
                  : b.paymentStatus === Booking_PaymentStatus.REQUIRES_ACTION ? " (waiting for the owner's bank)"
                  : " (payment pending)"}</span>
                <span className="actions">
                  {b.state === Booking_State.REQUESTED && <>{button(b, "accept", "Accept")}{button(b, "decline", "Decline", true)}</>}
                  {b.state === Booking_State.ACCEPTED && paid && <>{button(b, "start", "Start")}{button(b, "cancel", "Cancel", true)}</>}
                  {b.state === Booking_State.IN_PROGRESS && button(b, "complete", "Complete")}
                </span>
                {b.state === Booking_State.COMPLETED && <Reviews api={api} booking={b} side="business" other={who} />}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
