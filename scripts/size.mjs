// Prints the gzip -9 size of every shipped file (dist/), the figure that counts — the .wasm and
// the ES module entry together — and the budget lines. `--check` (run by `npm test` after the
// build) fails when that figure is above the CEILING.
//
// GOAL is issue 10's budget (24,000 B; moonshot 20 KiB). It is not met yet: CEILING is the
// measured figure of the current shape with a small margin, so that `npm test` refuses any
// growth; lower it with each cut, and set it to GOAL once the build fits.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const GOAL = 24000;
const MOONSHOT = 20 * 1024;
const CEILING = 30000;

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
// `gzip -9` as the issue measures it; Node's zlib (a few bytes apart) where there is no gzip.
const gz = (file) => {
  const run = spawnSync('gzip', ['-9c', join(dist, file)]);
  return run.status === 0 ? run.stdout.length : gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
};
for (const file of readdirSync(dist).sort()) {
  console.log(`${file.padEnd(24)} ${String(statSync(join(dist, file)).size).padStart(7)} B  gzip -9 ${String(gz(file)).padStart(6)} B`);
}
const total = gz('qys_sdk_wasm_bg.wasm') + gz('qys-sdk.mjs');
const against = (limit) => (total <= limit ? 'within' : `over by ${total - limit} B`);
console.log(`wasm + ES module, gzip -9: ${total} B`);
console.log(`  ceiling enforced by npm test: ${CEILING} B (${against(CEILING)})`);
console.log(`  issue 10 goal: ${GOAL} B (${against(GOAL)}); moonshot: ${MOONSHOT} B (${against(MOONSHOT)})`);
if (process.argv.includes('--check') && total > CEILING) {
  console.error(`size check failed: ${total} B > ${CEILING} B`);
  process.exit(1);
}
