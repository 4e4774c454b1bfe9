import { useEffect, useState, type FormEvent } from "react";
import type { Species } from "@petplatform/proto/petplatform/common/v1/animal_pb";
import type { ListPetsRequestSchema, Pet } from "@petplatform/proto/petplatform/pet/v1/pet_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { photoUrl, type Api } from "../api";
import { describe, type Problem } from "../errors";
import { ProblemBanner } from "../Form";
import { ageText, PLACES, SPECIES, speciesName } from "../labels";
import { follow, navigate, usePath } from "../router";

const PAGE_SIZE = 24;

/** The search lives in the address (?q=&species=&near=&lat=&lng=&radius=): back, reload and links keep it. */
interface Filters {
  q: string;
  species: string;
  near: string; // a PLACES id, "here" (the browser's position, with lat and lng), or "" for anywhere
  lat: string;
  lng: string;
  radius: string;
}

function filtersFrom(search: string): Filters {
  const p = new URLSearchParams(search);
  return { q: p.get("q") ?? "", species: p.get("species") ?? "", near: p.get("near") ?? "",
           lat: p.get("lat") ?? "", lng: p.get("lng") ?? "", radius: p.get("radius") ?? "25" };
}

function requestOf(f: Filters, pageToken: string): MessageInitShape<typeof ListPetsRequestSchema> {
  const request: MessageInitShape<typeof ListPetsRequestSchema> = { pageSize: PAGE_SIZE, pageToken, query: f.q.trim() };
  if (f.species) request.species = [Number(f.species) as Species];
  const place = f.near === "here" ? { latitude: Number(f.lat), longitude: Number(f.lng) }
                                  : PLACES.find((p) => p.id === f.near);
  if (place) {
    request.near = { latitude: place.latitude, longitude: place.longitude };
    request.radiusKm = Number(f.radius);
    request.orderBy = "distance";
  }
  return request;
}

export function Pets({ api }: { api: Api }) {
  const path = usePath();
  const search = path.includes("?") ? path.slice(path.indexOf("?")) : "";
  const filters = filtersFrom(search);
  const [pets, setPets] = useState<Pet[] | null>(null);
  const [next, setNext] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [locating, setLocating] = useState(false);
  const [near, setNear] = useState(filters.near);

  async function load(pageToken: string, f: Filters) {
    setProblem(null);
    try {
      const reply = await api.pets.listPets(requestOf(f, pageToken));
      setPets((before) => (pageToken && before ? [...before, ...reply.pets] : reply.pets));
      setNext(reply.nextPageToken);
    } catch (e) {
      setProblem(describe(e));
      if (!pageToken) setPets([]);
    }
  }

  useEffect(() => {
    setPets(null);
    void load("", filters);
  }, [search]);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const params = new URLSearchParams();
    for (const key of ["q", "species", "near", "radius"]) {
      const value = String(form.get(key) ?? "").trim();
      if (value) params.set(key, value);
    }
    if (params.get("near") === "here") {
      setLocating(true);
      try {
        const pos = await new Promise<GeolocationPosition>((resolve, reject) =>
          navigator.geolocation.getCurrentPosition(resolve, reject, { timeout: 10000 }));
        params.set("lat", pos.coords.latitude.toFixed(4));
        params.set("lng", pos.coords.longitude.toFixed(4));
      } catch {
        setProblem({ message: "We could not get your location. Allow it in your browser, or pick a city.",
                     fields: {} });
        return;
      } finally {
        setLocating(false);
      }
    }
    if (!params.get("near")) params.delete("radius");
    navigate("/" + (params.size ? `?${params}` : ""));
  }

  return (
    <section>
      <h1 tabIndex={-1}>Find a pet</h1>
      <form className="filters" role="search" aria-label="Pets" onSubmit={submit} key={search}>
        <div className="field">
          <label htmlFor="q">Search</label>
          <input id="q" name="q" type="search" defaultValue={filters.q} placeholder="Name, breed or description" />
        </div>
        <div className="field">
          <label htmlFor="species">Species</label>
          <select id="species" name="species" defaultValue={filters.species}>
            <option value="">Any species</option>
            {SPECIES.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="near">Near</label>
          <select id="near" name="near" value={near} onChange={(e) => setNear(e.target.value)}>
            <option value="">Anywhere</option>
            {PLACES.map((p) => <option key={p.id} value={p.id}>{p.label}</option>)}
            <option value="here">My current location</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="radius">Within (km)</label>
          <input id="radius" name="radius" type="number" min={1} max={20000} step={1} defaultValue={filters.radius}
                 disabled={!near} />
        </div>
        <button type="submit" disabled={locating}>{locating ? "Finding you…" : "Search"}</button>
      </form>
      <ProblemBanner problem={problem} />
      <div aria-live="polite" className="status">
        {pets === null ? "Loading pets…" : pets.length === 0 && !problem ? "No pets match. Try fewer filters or a wider distance." : `${pets.length}${next ? "+" : ""} ${pets.length === 1 && !next ? "pet" : "pets"}`}
      </div>
      {pets && pets.length > 0 && (
        <ul className="cards">
          {pets.map((pet) => <PetCard key={pet.name} api={api} pet={pet} distance={Boolean(filters.near)} />)}
        </ul>
      )}
      {next && (
        <button type="button" className="secondary" onClick={() => void load(next, filters)}>Show more pets</button>
      )}
    </section>
  );
}

function distanceText(km: number): string {
  return km < 1 ? "Under 1 km away" : `${km.toFixed(km < 10 ? 1 : 0)} km away`;
}

function PetCard({ api, pet, distance }: { api: Api; pet: Pet; distance: boolean }) {
  const photo = pet.photos[0];
  const facts = [speciesName(pet.species), pet.breed, ageText(pet.ageMonths)].filter(Boolean).join(" · ");
  return (
    <li className="card">
      {photo ? <img src={photoUrl(api, photo.uri)} alt="" width={photo.width || undefined}
                    height={photo.height || undefined} loading="lazy" />
             : <div className="no-photo" aria-hidden="true">No photo</div>}
      <h2><a href={`/${pet.name}`} onClick={follow}>{pet.displayName}</a></h2>
      <p>{facts}</p>
      {distance && <p className="distance">{distanceText(pet.distanceKm)}</p>}
    </li>
  );
}
