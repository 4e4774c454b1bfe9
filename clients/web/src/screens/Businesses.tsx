import { useCallback, useEffect, useState, type FormEvent } from "react";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  Booking_State, ServiceKind, type Booking, type Business, type Service, type Slot,
} from "@petplatform/proto/petplatform/marketplace/v1/marketplace_pb";
import type { Pet } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { PLACES } from "../labels";
import { Report } from "../Report";
import { follow } from "../router";

const KINDS: [ServiceKind, string][] = [
  [ServiceKind.WALKING, "Dog walking"], [ServiceKind.SITTING, "Pet sitting"], [ServiceKind.BOARDING, "Boarding"],
  [ServiceKind.DAY_CARE, "Day care"], [ServiceKind.GROOMING, "Grooming"],
];

export const BOOKING_STATE: Record<number, string> = {
  [Booking_State.REQUESTED]: "Waiting for the business", [Booking_State.ACCEPTED]: "Accepted",
  [Booking_State.IN_PROGRESS]: "Under way", [Booking_State.COMPLETED]: "Done",
  [Booking_State.DECLINED]: "Declined", [Booking_State.CANCELLED]: "Cancelled",
  [Booking_State.EXPIRED]: "No answer in time",
};

export function money(m: { currencyCode: string; units: bigint; nanos: number } | undefined): string {
  if (!m) return "";
  const amount = Number(m.units) + m.nanos / 1e9;
  return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currencyCode }).format(amount);
}

export function slotText(t: Timestamp | undefined, timeZone: string): string {
  if (!t) return "";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: timeZone || undefined })
    .format(timestampDate(t));
}

/** Businesses offering a kind of service near a place, nearest first. */
export function Businesses({ api }: { api: Api }) {
  const [kind, setKind] = useState(ServiceKind.WALKING);
  const [near, setNear] = useState(PLACES[0].id);
  const [found, setFound] = useState<Business[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);

  const search = useCallback(async () => {
    const place = PLACES.find((p) => p.id === near)!;
    setProblem(null);
    try {
      const reply = await api.market.searchBusinesses({
        kind, near: { latitude: place.latitude, longitude: place.longitude }, radiusKm: 25, pageSize: 50,
      });
      setFound(reply.businesses);
    } catch (e) {
      setFound([]);
      setProblem(describe(e));
    }
  }, [api, kind, near]);
  useEffect(() => void search(), [search]);

  return (
    <section>
      <h1 tabIndex={-1}>Pet services nearby</h1>
      <form className="filters" onSubmit={(e: FormEvent) => { e.preventDefault(); void search(); }}>
        <div className="field">
          <label htmlFor="kind">Service</label>
          <select id="kind" value={kind} onChange={(e) => setKind(Number(e.target.value) as ServiceKind)}>
            {KINDS.map(([v, label]) => <option key={v} value={v}>{label}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="biz-near">Near</label>
          <select id="biz-near" value={near} onChange={(e) => setNear(e.target.value)}>
            {PLACES.map((p) => <option key={p.id} value={p.id}>{p.label}</option>)}
          </select>
        </div>
      </form>
      <ProblemBanner problem={problem} />
      <p aria-live="polite" className="status">
        {found === null ? "Searching…" : found.length === 0 ? "No business offers that within 25 km." : `${found.length} found`}
      </p>
      {found && found.length > 0 && (
        <ul className="rows" aria-label="Businesses">
          {found.map((b) => (
            <li key={b.name}>
              <span>
                <a href={`/${b.name}`} onClick={follow}>{b.displayName}</a>
                {b.verified && <span className="badge">Verified</span>}
                <span className="muted"> · {b.distanceKm.toFixed(1)} km away
                  {b.rating > 0 && ` · rated ${b.rating.toFixed(1)} of 5`}</span>
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

// Payment methods this deployment's test payment provider takes: a real deployment collects a card with its
// provider's own form (e.g. Stripe Elements) and passes the token it gives.
const TEST_CARDS: [string, string][] = [["pm_card_visa", "Test card: Visa (succeeds)"],
                                        ["pm_card_threeDSecure2Required", "Test card: asks for 3-D Secure"],
                                        ["pm_card_chargeDeclined", "Test card: declined"]];

function isoDate(d: Date): { year: number; month: number; day: number } {
  return { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate() };
}

/** A business, its services, and booking one of a service's free slots for the person's own pets. */
export function BusinessPage({ api, session, name }: { api: Api; session: Session; name: string }) {
  const [business, setBusiness] = useState<Business | null>(null);
  const [services, setServices] = useState<Service[]>([]);
  const [service, setService] = useState("");
  const [slots, setSlots] = useState<Slot[] | null>(null);
  const [zone, setZone] = useState("");
  const [pets, setPets] = useState<Pet[]>([]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [booked, setBooked] = useState<Booking | null>(null);

  useEffect(() => {
    void (async () => {
      try {
        const [b, s, mine] = await Promise.all([
          api.market.getBusiness({ name }), api.market.listServices({ parent: name, pageSize: 50 }),
          api.pets.listPets({ owner: userOf(session), pageSize: 50 }),
        ]);
        setBusiness(b.business ?? null);
        setServices(s.services);
        setService(s.services[0]?.name ?? "");
        setPets(mine.pets);
      } catch (e) {
        setProblem(describe(e));
      }
    })();
  }, [api, name, session]);

  useEffect(() => {
    if (!service) return;
    setSlots(null);
    const first = new Date();
    const last = new Date(first.getTime() + 13 * 86_400_000);
    api.market.listAvailableSlots({ service, startDate: isoDate(first), endDate: isoDate(last) }).then(
      (r) => { setSlots(r.slots.slice(0, 12)); setZone(r.timeZone); },
      (e) => { setSlots([]); setProblem(describe(e)); });
  }, [api, service]);

  const book = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const start = slots?.find((s) => String(s.startTime?.seconds) === form.get("slot"));
    setProblem(null);
    if (!start) {
      setProblem({ message: "Choose a time first.", fields: {} });
      return;
    }
    try {
      const reply = await api.market.createBooking({
        booking: { service, pets: form.getAll("pet").map(String), startTime: start.startTime,
                   paymentMethod: String(form.get("card")) },
        requestId: crypto.randomUUID(),
      });
      setBooked(reply.booking ?? null);
    } catch (e) {
      setProblem(describe(e));
    }
  };

  if (!business) {
    return problem ? (
      <section><h1 tabIndex={-1}>Business not available</h1><ProblemBanner problem={problem} /></section>
    ) : <p aria-live="polite">Loading…</p>;
  }
  const chosen = services.find((s) => s.name === service);
  return (
    <section>
      <p><a href="/businesses" onClick={follow}>← Pet services nearby</a></p>
      <h1 tabIndex={-1}>{business.displayName}</h1>
      {business.description && <p>{business.description}</p>}
      {business.owner !== userOf(session) && <Report api={api} subject={business.name} what="this business" />}
      <ProblemBanner problem={problem} />
      {booked ? (
        <div role="status" className="banner ok">
          <p>Booked: {chosen?.displayName} on {slotText(booked.startTime, booked.timeZone)}. The business will
            answer within a day; you are charged {money(booked.price)} once it accepts.</p>
          <p><a href="/bookings" onClick={follow}>See your bookings</a></p>
        </div>
      ) : (
        <form onSubmit={(e) => void book(e)} className="narrow">
          <div className="field">
            <label htmlFor="service">Service</label>
            <select id="service" value={service} onChange={(e) => setService(e.target.value)}>
              {services.map((s) => (
                <option key={s.name} value={s.name}>{s.displayName}: {money(s.price)}, {s.durationMinutes} min</option>
              ))}
            </select>
          </div>
          <fieldset>
            <legend>Time ({zone || "local time"})</legend>
            {slots === null ? <p>Loading free times…</p> : slots.length === 0 ? <p>No free time in the next two weeks.</p> : (
              <ul className="choices">
                {slots.map((s, i) => (
                  <li key={String(s.startTime?.seconds)}>
                    <label>
                      <input type="radio" name="slot" value={String(s.startTime?.seconds)} defaultChecked={i === 0} />
                      {" "}{slotText(s.startTime, zone)}
                    </label>
                  </li>
                ))}
              </ul>
            )}
          </fieldset>
          <fieldset>
            <legend>Your pets</legend>
            {pets.length === 0 ? <p>You have no pets listed to book for.</p> : (
              <ul className="choices">
                {pets.map((p) => (
                  <li key={p.name}>
                    <label><input type="checkbox" name="pet" value={p.name} defaultChecked={pets.length === 1} /> {p.displayName}</label>
                  </li>
                ))}
              </ul>
            )}
          </fieldset>
          <div className="field">
            <label htmlFor="card">Payment</label>
            <select id="card" name="card">
              {TEST_CARDS.map(([v, label]) => <option key={v} value={v}>{label}</option>)}
            </select>
          </div>
          <button type="submit" disabled={!slots?.length || pets.length === 0}>Request booking</button>
        </form>
      )}
    </section>
  );
}
