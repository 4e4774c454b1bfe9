export * from "@petplatform/kit/errors";
