export * from "@petplatform/kit/router";
