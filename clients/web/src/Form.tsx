export * from "@petplatform/kit/form";
