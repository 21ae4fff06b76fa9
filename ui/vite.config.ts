import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The UI is built into ui/dist and served by adagiod at `/` (src/api/ui.ts).
// `npm run dev:ui` serves it with hot reload and proxies API calls to a running
// adagiod, at ADAGIO_ADDRESS (default http://127.0.0.1:7890).
const uiRoot = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const api = process.env.ADAGIO_ADDRESS ?? 'http://127.0.0.1:7890';

export default defineConfig({
  root: uiRoot,
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The layout engine (elkjs) is large but runs only in the worker; the warning is noise here.
    chunkSizeWarningLimit: 2000,
    reportCompressedSize: false,
    // elkjs makes the worker transform slow on a loaded machine; the timing warning is noise too.
    rolldownOptions: { checks: { bundlerTimings: false } },
  },
  worker: { format: 'es' },
  server: {
    host: '127.0.0.1',
    // The app imports the generated protobuf code and pure model helpers from ../src.
    fs: { allow: [repoRoot] },
    proxy: {
      '/v0': api,
      '/adagio.rpc.controlplane.ControlPlane': api,
    },
  },
});
