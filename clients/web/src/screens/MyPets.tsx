// The owner's own listings: what moderation decided about each (held and hidden pets are seen by their owner
// alone), and a form to list a pet or change one, with its photos.
import { useCallback, useEffect, useState, type ChangeEvent, type FormEvent } from "react";
import { EnergyLevel, PetSize, type Species } from "@petplatform/proto/petplatform/common/v1/animal_pb";
import { Pet_Listing, Pet_Moderation, Pet_Sex, Pet_Status, type Pet } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import { photoUrl, userOf, type Api, type Session } from "../api";
import { describe, type Problem } from "../errors";
import { Field, ProblemBanner } from "../Form";
import { PLACES, SPECIES, speciesName, statusName } from "../labels";
import { follow, navigate } from "../router";

/** What moderation decided, in words for the owner; null when the listing is shown as usual. */
export function moderationText(pet: Pet): { title: string; detail: string } | null {
  const why = pet.moderationReason ? ` Reason: ${pet.moderationReason}.` : "";
  if (pet.moderation === Pet_Moderation.HELD) {
    return { title: "Held for review", detail: `Only you can see this listing until a moderator has looked at it.${why}` };
  }
  if (pet.moderation === Pet_Moderation.HIDDEN) {
    return { title: "Hidden by a moderator", detail: `Nobody else can see this listing.${why}` };
  }
  return null;
}

function ModerationNotice({ pet }: { pet: Pet }) {
  const text = moderationText(pet);
  if (!text) return null;
  return (
    <div className="banner held" role="status">
      <p><strong>{text.title}.</strong> {text.detail}</p>
    </div>
  );
}

/** The person's pets, held and hidden ones included, each with its moderation state. */
export function MyPets({ api, session }: { api: Api; session: Session }) {
  const [pets, setPets] = useState<Pet[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    api.pets.listPets({ owner: userOf(session), pageSize: 100 }).then(
      (r) => setPets(r.pets), (e) => { setPets([]); setProblem(describe(e)); });
  }, [api, session]);

  return (
    <section>
      <h1 tabIndex={-1}>Your pets</h1>
      <p><a className="button" href="/mypets/new" onClick={follow}>List a pet</a></p>
      <ProblemBanner problem={problem} />
      {pets === null ? <p aria-live="polite">Loading…</p> : pets.length === 0 ? <p>You have not listed a pet yet.</p> : (
        <ul className="rows" aria-label="Your pets">
          {pets.map((pet) => {
            const held = moderationText(pet);
            return (
              <li key={pet.name}>
                <span>
                  <a href={`/mypets/${pet.name.split("/")[1]}`} onClick={follow}>{pet.displayName}</a>
                  <span className="muted"> · {speciesName(pet.species)} · {statusName(pet.status)}
                    {` · ${pet.photos.length} photo${pet.photos.length === 1 ? "" : "s"}`}</span>
                </span>
                {held ? <span className="badge warn">{held.title}</span> : <span className="badge">Visible</span>}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

const SIZES: [PetSize, string][] = [[PetSize.SMALL, "Small"], [PetSize.MEDIUM, "Medium"], [PetSize.LARGE, "Large"],
                                    [PetSize.EXTRA_LARGE, "Extra large"]];
const ENERGY: [EnergyLevel, string][] = [[EnergyLevel.LOW, "Calm"], [EnergyLevel.MEDIUM, "Playful"],
                                         [EnergyLevel.HIGH, "Very energetic"]];
const STATUSES: Pet_Status[] = [Pet_Status.AVAILABLE, Pet_Status.PENDING, Pet_Status.ADOPTED];
// The form's fields, as the contract names them: UpdatePet's mask.
const MASK = ["display_name", "species", "breed", "sex", "size", "birth_date", "description", "status", "location",
              "good_with_children", "good_with_dogs", "good_with_cats", "listing", "energy"];

function placeOf(pet: Pet | null): string {
  if (!pet?.location) return PLACES[0].id;
  const near = PLACES.find((p) => Math.abs(p.latitude - pet.location!.latitude) < 0.01
                                  && Math.abs(p.longitude - pet.location!.longitude) < 0.01);
  return near?.id ?? "";
}

function Select({ id, label, value, options, problem, field }: {
  id: string; label: string; value: number | string; options: [number | string, string][]; problem: Problem | null;
  field: string;
}) {
  const error = problem?.fields[field];
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      <select id={id} name={field} defaultValue={String(value)} aria-invalid={error ? true : undefined}
              aria-describedby={error ? `${id}-error` : undefined}>
        {options.map(([v, text]) => <option key={String(v)} value={String(v)}>{text}</option>)}
      </select>
      {error && <p id={`${id}-error`} className="error-text">{error}</p>}
    </div>
  );
}

/** Lists a new pet (`id` empty) or changes one of the person's pets, and manages its photos. */
export function PetForm({ api, id }: { api: Api; id: string }) {
  const name = id ? `pets/${id}` : "";
  const [pet, setPet] = useState<Pet | null>(null);
  const [loading, setLoading] = useState(Boolean(id));
  const [problem, setProblem] = useState<Problem | null>(null);
  const [photoProblem, setPhotoProblem] = useState<Problem | null>(null);
  const [status, setStatus] = useState("");
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    if (!name) return;
    try {
      setPet((await api.pets.getPet({ name })).pet ?? null);
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setLoading(false);
    }
  }, [api, name]);
  useEffect(() => void load(), [load]);

  const save = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (k: string) => String(form.get(k) ?? "").trim();
    const place = PLACES.find((p) => p.id === text("place"));
    const born = text("birth_month"); // "YYYY-MM"
    const values = {
      displayName: text("display_name"), species: Number(text("species")) as Species, breed: text("breed"),
      sex: Number(text("sex")) as Pet_Sex, size: Number(text("size")) as PetSize, description: text("description"),
      listing: Number(text("listing")) as Pet_Listing, energy: Number(text("energy")) as EnergyLevel,
      status: Number(text("status") || Pet_Status.AVAILABLE) as Pet_Status,
      goodWithChildren: form.has("good_with_children"), goodWithDogs: form.has("good_with_dogs"),
      goodWithCats: form.has("good_with_cats"),
      birthDate: born ? { year: Number(born.slice(0, 4)), month: Number(born.slice(5, 7)), day: 0 } : undefined,
      location: place ? { latitude: place.latitude, longitude: place.longitude } : pet?.location,
    };
    setProblem(null);
    setStatus("");
    setBusy(true);
    try {
      if (pet) {
        const reply = await api.pets.updatePet({ pet: { ...values, name: pet.name }, updateMask: { paths: MASK } });
        setPet(reply.pet ?? null);
        setStatus("Your changes are saved.");
      } else {
        const reply = await api.pets.createPet({ pet: values, requestId: crypto.randomUUID() });
        const made = reply.pet!;
        navigate(`/mypets/${made.name.split("/")[1]}?new=1`, true);
      }
    } catch (e) {
      setProblem(describe(e));
    } finally {
      setBusy(false);
    }
  };

  const upload = async (event: ChangeEvent<HTMLInputElement>) => {
    const input = event.currentTarget;
    const files = [...(input.files ?? [])];
    if (!pet || files.length === 0) return;
    setPhotoProblem(null);
    setStatus("");
    setBusy(true);
    try {
      for (const file of files) {
        // The pet service checks the bytes themselves (type, size, pixels): the browser only carries them.
        await api.pets.uploadPetPhoto({ parent: pet.name, content: new Uint8Array(await file.arrayBuffer()) });
      }
      setStatus(files.length === 1 ? "The photo was added." : `${files.length} photos were added.`);
      await load();
    } catch (e) {
      setPhotoProblem(describe(e));
    } finally {
      input.value = "";
      setBusy(false);
    }
  };

  const removePhoto = async (photo: string) => {
    setPhotoProblem(null);
    try {
      await api.pets.deletePetPhoto({ name: photo });
      setStatus("The photo was removed.");
      await load();
    } catch (e) {
      setPhotoProblem(describe(e));
    }
  };

  if (loading) return <p aria-live="polite">Loading…</p>;
  if (id && !pet) {
    return <section><h1 tabIndex={-1}>Pet not available</h1><ProblemBanner problem={problem} /></section>;
  }
  const justListed = location.search.includes("new=1");
  const photoError = photoProblem?.fields["content"];
  return (
    <section>
      <p><a href="/mypets" onClick={follow}>← Your pets</a></p>
      <h1 tabIndex={-1}>{pet ? `Edit ${pet.displayName}` : "List a pet"}</h1>
      {pet && <ModerationNotice pet={pet} />}
      <p className="status" role="status">{justListed && !status ? `${pet?.displayName} is listed. Add a photo or two.` : status}</p>
      <ProblemBanner problem={problem} />
      <form className="pet-form" onSubmit={(e) => void save(e)} key={pet?.updateTime?.seconds.toString() ?? "new"}>
        <Field label="Name" field="display_name" problem={problem} required maxLength={64}
               defaultValue={pet?.displayName} />
        <Select id="pet-species" label="Species" field="species" problem={problem} value={pet?.species ?? SPECIES[0][0]}
                options={SPECIES} />
        <Field label="Breed" field="breed" problem={problem} maxLength={64} defaultValue={pet?.breed} />
        <Select id="pet-sex" label="Sex" field="sex" problem={problem} value={pet?.sex ?? 0}
                options={[[0, "Not said"], [Pet_Sex.MALE, "Male"], [Pet_Sex.FEMALE, "Female"]]} />
        <Select id="pet-size" label="Adult size" field="size" problem={problem} value={pet?.size ?? 0}
                options={[[0, "Not said"], ...SIZES]} />
        <Select id="pet-energy" label="Energy" field="energy" problem={problem} value={pet?.energy ?? 0}
                options={[[0, "Not said"], ...ENERGY]} />
        <Field label="Born (month)" field="birth_month" problem={problem} type="month"
               defaultValue={pet?.birthDate ? `${pet.birthDate.year}-${String(pet.birthDate.month).padStart(2, "0")}` : ""} />
        <Select id="pet-place" label="Where" field="place" problem={problem} value={placeOf(pet)}
                options={[...(pet && !placeOf(pet) ? [["", "Where it is now"] as [string, string]] : []),
                          ...PLACES.map((p): [string, string] => [p.id, p.label])]} />
        <Select id="pet-listing" label="Listed for" field="listing" problem={problem}
                value={pet?.listing || Pet_Listing.ADOPTION}
                options={[[Pet_Listing.ADOPTION, "Adoption: looking for a new home"],
                          [Pet_Listing.PLAYDATES, "Playdates: not for adoption"]]} />
        {pet && (
          <Select id="pet-status" label="Adoption status" field="status" problem={problem} value={pet.status}
                  options={STATUSES.map((s): [number, string] => [s, statusName(s)])} />
        )}
        <fieldset>
          <legend>Good with</legend>
          <ul className="choices">
            {([["good_with_children", "Children", pet?.goodWithChildren], ["good_with_dogs", "Dogs", pet?.goodWithDogs],
               ["good_with_cats", "Cats", pet?.goodWithCats]] as const).map(([field, label, on]) => (
              <li key={field}><label><input type="checkbox" name={field} defaultChecked={Boolean(on)} /> {label}</label></li>
            ))}
          </ul>
        </fieldset>
        <div className={problem?.fields["description"] ? "field invalid" : "field"}>
          <label htmlFor="pet-description">Description</label>
          <textarea id="pet-description" name="description" rows={5} maxLength={5000} defaultValue={pet?.description} />
          {problem?.fields["description"] && <p className="error-text">{problem.fields["description"]}</p>}
        </div>
        <button type="submit" disabled={busy}>{pet ? "Save changes" : "List this pet"}</button>
      </form>

      {pet && (
        <section aria-labelledby="photos-heading">
          <h2 id="photos-heading">Photos</h2>
          {pet.photos.length === 0 ? <p>No photos yet.</p> : (
            <ul className="photos" aria-label={`Photos of ${pet.displayName}`}>
              {pet.photos.map((photo, i) => (
                <li key={photo.name}>
                  <img src={photoUrl(api, photo.uri)} width={photo.width || undefined} height={photo.height || undefined}
                       alt={`${pet.displayName}, photo ${i + 1} of ${pet.photos.length}`} />
                  <button type="button" className="secondary" onClick={() => void removePhoto(photo.name)}>
                    Remove photo {i + 1}
                  </button>
                </li>
              ))}
            </ul>
          )}
          <ProblemBanner problem={photoProblem && !photoError ? photoProblem : null} />
          <div className={photoError ? "field invalid" : "field"}>
            <label htmlFor="pet-photo">Add photos</label>
            <p id="pet-photo-hint" className="hint">JPEG, PNG or WebP, up to 5 MB each.</p>
            <input id="pet-photo" type="file" accept="image/jpeg,image/png,image/webp" multiple disabled={busy}
                   aria-describedby={photoError ? "pet-photo-hint pet-photo-error" : "pet-photo-hint"}
                   aria-invalid={photoError ? true : undefined} onChange={(e) => void upload(e)} />
            {photoError && <p id="pet-photo-error" className="error-text">{photoError}</p>}
          </div>
        </section>
      )}
    </section>
  );
}
