import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { loadConfig } from "@petplatform/kit/session";
import { makeApi } from "./api";
import { App } from "./App";
import "./styles.css";

const api = makeApi(await loadConfig());
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App api={api} />
  </StrictMode>,
);
