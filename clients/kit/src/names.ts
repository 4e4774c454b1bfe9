// Resource names (`pets/…`, `users/…`) stand for things people call by name. useNames fetches what a person
// reads instead, once per name for the life of the page; each app says how to look a name up.
import { useEffect, useRef, useState } from "react";

const cache = new Map<string, Promise<string>>();

function named(name: string, lookUp: (name: string) => Promise<string>): Promise<string> {
  let found = cache.get(name);
  if (!found) {
    // A name that cannot be read (a removed pet, a blocked person) stays unnamed, and is asked again later.
    found = lookUp(name).catch(() => {
      cache.delete(name);
      return "";
    });
    cache.set(name, found);
  }
  return found;
}

/** Resource name -> what people call it; names still loading or unreadable are absent. */
export function useNames(names: string[], lookUp: (name: string) => Promise<string>): Record<string, string> {
  const [known, setKnown] = useState<Record<string, string>>({});
  const latest = useRef(lookUp);
  latest.current = lookUp;
  const key = [...new Set(names)].sort().join(" ");
  useEffect(() => {
    let live = true;
    for (const name of key.split(" ").filter(Boolean)) {
      void named(name, latest.current).then((text) => {
        if (live && text) setKnown((k) => (k[name] === text ? k : { ...k, [name]: text }));
      });
    }
    return () => {
      live = false;
    };
  }, [key]);
  return known;
}
