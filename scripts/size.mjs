// Prints the gzip size of every shipped file (dist/) and the budget figure of issue 4:
// .wasm + ES module entry ≤ 20 KiB gzip together. `--check` exits 1 above the budget.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const BUDGET = 20 * 1024;
const gz = (file) => gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
for (const file of readdirSync(dist).sort()) {
  console.log(`${file.padEnd(24)} ${String(statSync(join(dist, file)).size).padStart(7)} B  gzip ${String(gz(file)).padStart(6)} B`);
}
const total = gz('qys_sdk_wasm_bg.wasm') + gz('qys-sdk.mjs');
console.log(`wasm + ES module, gzip: ${total} B of a ${BUDGET} B budget (${total <= BUDGET ? 'within' : 'over by ' + (total - BUDGET) + ' B'})`);
if (process.argv.includes('--check') && total > BUDGET) process.exit(1);
