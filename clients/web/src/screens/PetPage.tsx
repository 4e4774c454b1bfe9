import { useEffect, useState } from "react";
import type { Pet } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { photoUrl, userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { ageText, sexName, sizeName, speciesName, statusName } from "../labels";
import { Report } from "../Report";
import { follow } from "../router";

/** A pet's public page; a signed-in person other than its owner may report it. */
export function PetPage({ api, session, name }: { api: Api; session: Session | null; name: string }) {
  const [pet, setPet] = useState<Pet | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);

  useEffect(() => {
    setPet(null);
    setProblem(null);
    api.pets.getPet({ name }).then((reply) => setPet(reply.pet ?? null), (e) => setProblem(describe(e)));
  }, [api, name]);

  if (problem) {
    return (
      <section>
        <h1 tabIndex={-1}>Pet not available</h1>
        <ProblemBanner problem={problem} />
        <p><a href="/" onClick={follow}>Back to all pets</a></p>
      </section>
    );
  }
  if (!pet) return <p aria-live="polite">Loading…</p>;

  const facts: [string, string][] = [
    ["Species", speciesName(pet.species)], ["Breed", pet.breed], ["Sex", sexName(pet.sex)],
    ["Size", sizeName(pet.size)], ["Age", ageText(pet.ageMonths)], ["Status", statusName(pet.status)],
  ];
  const goodWith = [pet.goodWithChildren && "children", pet.goodWithDogs && "dogs", pet.goodWithCats && "cats"]
    .filter(Boolean).join(", ");
  if (goodWith) facts.push(["Good with", goodWith]);

  return (
    <article className="pet">
      <p><a href="/" onClick={follow}>← All pets</a></p>
      <h1 tabIndex={-1}>{pet.displayName}</h1>
      {pet.photos.length > 0 ? (
        <ul className="photos" aria-label={`Photos of ${pet.displayName}`}>
          {pet.photos.map((photo, i) => (
            <li key={photo.name}>
              <img src={photoUrl(api, photo.uri)} width={photo.width || undefined} height={photo.height || undefined}
                   alt={`${pet.displayName}, photo ${i + 1} of ${pet.photos.length}`} />
            </li>
          ))}
        </ul>
      ) : <p>No photos yet.</p>}
      <dl className="facts">
        {facts.filter(([, v]) => v).map(([k, v]) => (
          <div key={k}><dt>{k}</dt><dd>{v}</dd></div>
        ))}
      </dl>
      {pet.description && <p className="description">{pet.description}</p>}
      {session && pet.owner !== userOf(session) && <Report api={api} subject={pet.name} what="this listing" />}
    </article>
  );
}
