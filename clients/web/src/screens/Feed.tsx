import { useCallback, useEffect, useRef, useState } from "react";
import { SwipeAction, type FeedCard } from "@petplatform/proto/petplatform/matching/v1/matching_pb";
import { Pet_Listing, type Pet } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { photoUrl, userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { ageText, PLACES, speciesName } from "../labels";
import { follow } from "../router";

const DONE: Record<number, string> = {
  [SwipeAction.PASS]: "You passed on",
  [SwipeAction.LIKE]: "You liked",
  [SwipeAction.SUPER_LIKE]: "You super-liked",
};

/** The swipe feed: pets picked for the person, each with why, and like, super-like or pass (undo the last). */
export function Feed({ api, session }: { api: Api; session: Session }) {
  const [cards, setCards] = useState<FeedCard[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [last, setLast] = useState<string>("");
  const [busy, setBusy] = useState(false);
  // Where to look from: one of the demo's cities (no geocoder), or the person's saved preferences.
  const [near, setNear] = useState("");
  // Only the latest request's answer is shown: an earlier, slower one (another place) must not overwrite it.
  const latest = useRef(0);
  // Playdates: the person's own pet listed for them, the feed then holds playmates for it ("" is adoption).
  const [acting, setActing] = useState("");
  const [playmates, setPlaymates] = useState<Pet[]>([]);
  useEffect(() => {
    api.pets.listPets({ owner: userOf(session), listings: [Pet_Listing.PLAYDATES], pageSize: 50 }).then(
      (r) => setPlaymates(r.pets), () => setPlaymates([]));
  }, [api, session]);

  const load = useCallback(async () => {
    const place = PLACES.find((p) => p.id === near);
    const mine = ++latest.current;
    setProblem(null);
    try {
      const where = place ? { location: { latitude: place.latitude, longitude: place.longitude }, radiusKm: 100 } : {};
      const reply = await api.matching.getFeed({ pageSize: 20, actingPet: acting, ...where });
      if (mine === latest.current) setCards(reply.cards);
    } catch (e) {
      if (mine !== latest.current) return;
      setCards([]);
      setProblem(describe(e));
    }
  }, [api, near, acting]);
  useEffect(() => void load(), [load]);

  const swipe = async (card: FeedCard, action: SwipeAction) => {
    const pet = card.pet!;
    setBusy(true);
    setProblem(null);
    try {
      const reply = await api.matching.swipe({ pet: pet.name, action, actingPet: acting });
      setCards((cs) => cs?.filter((c) => c.pet?.name !== pet.name) ?? null);
      const told = reply.interest ? " The owner has been told." : reply.match ? " It's a match!" : "";
      setLast(`${DONE[action]} ${pet.displayName}.${told}`);
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };

  const undo = async () => {
    setBusy(true);
    setProblem(null);
    try {
      await api.matching.undoSwipe({});
      setLast("Your last swipe was undone.");
      await load();
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1 tabIndex={-1}>Your feed</h1>
      <p className="lead">{acting
        ? "Playmates picked for your pet, with why. When both owners like each other's pets, it's a playdate match."
        : "Pets picked for you, with why. Like one to tell its owner you are interested."}</p>
      {playmates.length > 0 && (
        <div className="field narrow-field">
          <label htmlFor="feed-for">Looking for</label>
          <select id="feed-for" value={acting} onChange={(e) => setActing(e.target.value)}>
            <option value="">A pet to adopt</option>
            {playmates.map((p) => <option key={p.name} value={p.name}>Playdates for {p.displayName}</option>)}
          </select>
        </div>
      )}
      <div className="field narrow-field">
        <label htmlFor="feed-near">Near</label>
        <select id="feed-near" value={near} onChange={(e) => setNear(e.target.value)}>
          <option value="">Where my preferences say</option>
          {PLACES.map((p) => <option key={p.id} value={p.id}>{p.label} (within 100 km)</option>)}
        </select>
      </div>
      <ProblemBanner problem={problem} />
      <div aria-live="polite" className="status">
        {last && <span>{last} </span>}
        {cards === null ? "Loading your feed…" : cards.length === 0 && !problem ? "No more pets for now. Come back later, or widen your preferences." : ""}
      </div>
      {last && <button type="button" className="secondary" onClick={() => void undo()} disabled={busy}>Undo last swipe</button>}
      {cards && cards.length > 0 && (
        <ul className="cards feed">
          {cards.map((card) => <SwipeCard key={card.pet!.name} api={api} card={card} busy={busy} onSwipe={swipe} />)}
        </ul>
      )}
    </section>
  );
}

function SwipeCard({ api, card, busy, onSwipe }: {
  api: Api; card: FeedCard; busy: boolean; onSwipe: (card: FeedCard, action: SwipeAction) => Promise<void>;
}) {
  const pet = card.pet!;
  const photo = pet.photos[0];
  const facts = [speciesName(pet.species), pet.breed, ageText(pet.ageMonths)].filter(Boolean).join(" · ");
  return (
    <li className="card" aria-label={pet.displayName}>
      {photo ? <img src={photoUrl(api, photo.uri)} alt="" width={photo.width || undefined}
                    height={photo.height || undefined} loading="lazy" />
             : <div className="no-photo" aria-hidden="true">No photo</div>}
      <h2><a href={`/${pet.name}`} onClick={follow}>{pet.displayName}</a></h2>
      <p>{facts}</p>
      {card.reasons.length > 0 && (
        <>
          <h3 className="why">Why you see {pet.displayName}</h3>
          <ul className="reasons">{card.reasons.map((r) => <li key={r}>{r[0].toUpperCase() + r.slice(1)}</li>)}</ul>
        </>
      )}
      <div className="actions" role="group" aria-label={`Your answer about ${pet.displayName}`}>
        <button type="button" className="secondary" disabled={busy}
                onClick={() => void onSwipe(card, SwipeAction.PASS)}>Pass</button>
        <button type="button" disabled={busy} onClick={() => void onSwipe(card, SwipeAction.LIKE)}>Like</button>
        <button type="button" disabled={busy}
                onClick={() => void onSwipe(card, SwipeAction.SUPER_LIKE)}>Super-like</button>
      </div>
    </li>
  );
}
