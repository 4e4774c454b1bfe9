import { defineConfig } from "vite";

// React's JSX through esbuild (no Babel plugin: nothing here needs Fast Refresh's extra weight in CI).
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: { target: "es2022", sourcemap: true },
  // `npm run dev`: no /config.json there, so the app calls the edge at port 3000 of the same host.
  server: { port: 3100, strictPort: true },
});
