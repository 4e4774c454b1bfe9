import { defineConfig } from "vite";

// Served by the platform's web server under /admin/ (gateway/webapp.py), next to the web app.
export default defineConfig({
  base: "/admin/",
  esbuild: { jsx: "automatic" },
  build: { target: "es2022", sourcemap: true },
  // `npm run dev`: no /config.json there, so the panel calls the edge at port 3000 of the same host.
  server: { port: 3101, strictPort: true },
});
