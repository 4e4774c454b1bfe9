// Pets and people named in matches, interests and rooms are resource names; these hooks fetch what a person
// reads instead (a pet's name, someone's display name), once per name for the life of the page.
import { useEffect, useState } from "react";
import type { Api } from "./api";

const cache = new Map<string, Promise<string>>();

function lookUp(api: Api, name: string): Promise<string> {
  let found = cache.get(name);
  if (!found) {
    const call = name.startsWith("pets/")
      ? api.pets.getPet({ name }).then((r) => r.pet?.displayName ?? "")
      : name.includes("/services/")
      ? api.market.getService({ name }).then((r) => r.service?.displayName ?? "")
      : name.startsWith("businesses/")
      ? api.market.getBusiness({ name }).then((r) => r.business?.displayName ?? "")
      : api.users.getUser({ name }).then((r) => r.user?.displayName ?? "");
    // A name that cannot be read (a removed pet, a blocked person) stays unnamed, and is asked again later.
    found = call.catch(() => {
      cache.delete(name);
      return "";
    });
    cache.set(name, found);
  }
  return found;
}

/** Resource name -> what people call it; names still loading or unreadable are absent. */
export function useNames(api: Api, names: string[]): Record<string, string> {
  const [known, setKnown] = useState<Record<string, string>>({});
  const key = [...new Set(names)].sort().join(" ");
  useEffect(() => {
    let live = true;
    for (const name of key.split(" ").filter(Boolean)) {
      void lookUp(api, name).then((text) => {
        if (live && text) setKnown((k) => (k[name] === text ? k : { ...k, [name]: text }));
      });
    }
    return () => {
      live = false;
    };
  }, [api, key]);
  return known;
}
