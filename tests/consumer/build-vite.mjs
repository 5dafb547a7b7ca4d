// Vite 7 through its Node API, default config (no plugins).
import { build } from 'vite';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
await build({ root: join(here, 'app'), logLevel: 'warn', build: { outDir: process.argv[2], emptyOutDir: true } });
