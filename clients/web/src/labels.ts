// Words for the contract's enums, as people read them.
import { PetSize, Species } from "@petplatform/proto/petplatform/common/v1/animal_pb";
import { Pet_Sex, Pet_Status } from "@petplatform/proto/petplatform/pet/v1/pet_pb";

export const SPECIES: [Species, string][] = [
  [Species.DOG, "Dog"], [Species.CAT, "Cat"], [Species.RABBIT, "Rabbit"], [Species.BIRD, "Bird"],
  [Species.HAMSTER, "Hamster"], [Species.GUINEA_PIG, "Guinea pig"], [Species.REPTILE, "Reptile"],
  [Species.FISH, "Fish"], [Species.OTHER, "Other"],
];

export function speciesName(s: Species): string {
  return SPECIES.find(([v]) => v === s)?.[1] ?? "Pet";
}

export function sizeName(s: PetSize): string {
  return { [PetSize.SMALL]: "Small", [PetSize.MEDIUM]: "Medium", [PetSize.LARGE]: "Large",
           [PetSize.EXTRA_LARGE]: "Extra large" }[s as number] ?? "";
}

export function sexName(s: Pet_Sex): string {
  return { [Pet_Sex.MALE]: "Male", [Pet_Sex.FEMALE]: "Female" }[s as number] ?? "";
}

export function statusName(s: Pet_Status): string {
  return { [Pet_Status.AVAILABLE]: "Available", [Pet_Status.PENDING]: "Adoption pending",
           [Pet_Status.ADOPTED]: "Adopted" }[s as number] ?? "";
}

export function ageText(months: number): string {
  if (months <= 0) return "";
  if (months < 12) return `${months} month${months === 1 ? "" : "s"} old`;
  const years = Math.floor(months / 12);
  return `${years} year${years === 1 ? "" : "s"} old`;
}

// Places to measure distance from (there is no geocoder in the platform): the demo's cities, or the
// browser's own position.
export const PLACES: { id: string; label: string; latitude: number; longitude: number }[] = [
  { id: "tokyo", label: "Tokyo", latitude: 35.6812, longitude: 139.7671 },
  { id: "osaka", label: "Osaka", latitude: 34.6937, longitude: 135.5023 },
  { id: "sapporo", label: "Sapporo", latitude: 43.0618, longitude: 141.3545 },
  { id: "bangkok", label: "Bangkok", latitude: 13.7563, longitude: 100.5018 },
];
