// Cases, reports and the audit log name pets and people by resource name; staff read names. Fetched once per
// name for the life of the page: a pet's name (the pet service shows staff held and hidden ones too), an
// account's display name and email (auth shows them to staff).
import { useNames as useKitNames } from "@petplatform/kit/names";
import type { Api } from "./api";

function lookUp(api: Api, name: string): Promise<string> {
  return name.startsWith("pets/")
    ? api.pets.getPet({ name }).then((r) => r.pet?.displayName ?? "")
    : api.auth.getAccount({ name }).then((r) => r.account ? `${r.account.displayName} <${r.account.email}>` : "");
}

/** Resource names (`pets/…`, `users/…`; others are ignored) -> what people call them, once known. */
export function useNames(api: Api, names: string[]): Record<string, string> {
  return useKitNames(names.filter((n) => /^(pets|users)\/[^/]+$/.test(n)), (name) => lookUp(api, name));
}

/** A resource as staff read it: its name, and the resource name in small print (what support quotes). */
export function Named({ name, names }: { name: string; names: Record<string, string> }) {
  const known = names[name];
  return known ? <>{known} <span className="muted id">{name}</span></> : <span className="id">{name}</span>;
}
