// Pets and people named in matches, interests and rooms are resource names; useNames fetches what a person
// reads instead (a pet's name, someone's display name, a business or service's name).
import { useNames as useKitNames } from "@petplatform/kit/names";
import type { Api } from "./api";

function lookUp(api: Api, name: string): Promise<string> {
  return name.startsWith("pets/")
    ? api.pets.getPet({ name }).then((r) => r.pet?.displayName ?? "")
    : name.includes("/services/")
    ? api.market.getService({ name }).then((r) => r.service?.displayName ?? "")
    : name.startsWith("businesses/")
    ? api.market.getBusiness({ name }).then((r) => r.business?.displayName ?? "")
    : api.users.getUser({ name }).then((r) => r.user?.displayName ?? "");
}

/** Resource name -> what people call it; names still loading or unreadable are absent. */
export function useNames(api: Api, names: string[]): Record<string, string> {
  return useKitNames(names, (name) => lookUp(api, name));
}
