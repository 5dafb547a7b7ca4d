// webpack 5 through its Node API, default asset handling (no loaders, no plugins).
import webpack from 'webpack';
import { writeFileSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
const stats = await new Promise((resolve, reject) => webpack({
  mode: 'production',
  context: here,
  entry: './app/main.js',
  output: { path: out, filename: 'main.js', publicPath: '/' },
}, (err, s) => (err ? reject(err) : resolve(s))));
if (stats.hasErrors()) throw new Error(stats.toString('errors-only'));
const html = readFileSync(join(here, 'app/index.html'), 'utf8').replace('type="module" src="./main.js"', 'src="/main.js"');
writeFileSync(join(out, 'index.html'), html);
