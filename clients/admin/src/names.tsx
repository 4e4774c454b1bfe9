// Cases, reports and the audit log name pets and people by resource name; staff read names. Fetched once per
// name for the life of the page: a pet's name (the pet service shows staff held and hidden ones too), an
// account's display name and email (auth shows them to staff).
import { useEffect, useState } from "react";
import type { Api } from "./api";

const cache = new Map<string, Promise<string>>();

function lookUp(api: Api, name: string): Promise<string> {
  let found = cache.get(name);
  if (!found) {
    const call = name.startsWith("pets/")
      ? api.pets.getPet({ name }).then((r) => r.pet?.displayName ?? "")
      : api.auth.getAccount({ name }).then((r) => r.account ? `${r.account.displayName} <${r.account.email}>` : "");
    // A name that cannot be read stays unnamed, and is asked again later.
    found = call.catch(() => {
      cache.delete(name);
      return "";
    });
    cache.set(name, found);
  }
  return found;
}

/** Resource names (`pets/…`, `users/…`; others are ignored) -> what people call them, once known. */
export function useNames(api: Api, names: string[]): Record<string, string> {
  const [known, setKnown] = useState<Record<string, string>>({});
  const key = [...new Set(names.filter((n) => /^(pets|users)\/[^/]+$/.test(n)))].sort().join(" ");
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

/** A resource as staff read it: its name, and the resource name in small print (what support quotes). */
export function Named({ name, names }: { name: string; names: Record<string, string> }) {
  const known = names[name];
  return known ? <>{known} <span className="muted id">{name}</span></> : <span className="id">{name}</span>;
}
