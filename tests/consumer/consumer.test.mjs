// The packed tarball as integrators get it: npm pack → install → build with webpack 5 and with
// Vite 7 (no plugins) → a sign flow in Chromium against the sandbox, with WebAssembly and without
// it (on the wasm2js fallback the bundler emitted); TypeScript --strict accepts typed use and
// refuses wrong option types, also in a plain browser project (no @types, ES2017 lib).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy, launch } from '../e2e/harness.mjs';
import { newPage } from '../e2e/flows.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'qys-consumer-'));
let browser, tarball, packed;

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

before(async () => {
  const pack = run('npm', ['pack', '--json', '--pack-destination', work], root);
  assert.equal(pack.status, 0, pack.out);
  packed = JSON.parse(pack.out.slice(pack.out.indexOf('['), pack.out.lastIndexOf(']') + 1))[0];
  tarball = join(work, packed.filename);
  cpSync(here, join(work, 'consumer'), { recursive: true, filter: (p) => !p.includes('node_modules') });
  const install = run('npm', ['install', '--no-audit', '--no-fund', '--no-save', tarball], join(work, 'consumer'));
  assert.equal(install.status, 0, install.out);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  rmSync(work, { recursive: true, force: true });
});

test('npm pack holds only what a user needs', () => {
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, [
    'README.md', 'dist/index.d.ts', 'dist/index.js', 'dist/qys-sdk.d.ts', 'dist/qys-sdk.mjs',
    'dist/qys_sdk_wasm.d.ts', 'dist/qys_sdk_wasm2js.js', 'dist/qys_sdk_wasm_bg.wasm',
    // The mini-program host page that opens the plugin (`miniProgramPage`'s default).
    'miniprogram/README.md', 'miniprogram/app.json.snippet', 'miniprogram/pages/qys/qys.js',
    'miniprogram/pages/qys/qys.json', 'miniprogram/pages/qys/qys.wxml', 'package.json',
  ]);
  console.log(`# npm pack: ${files.length} files, ${packed.size} B packed, ${packed.unpackedSize} B unpacked`);
});

async function signThrough(bundler) {
  const out = join(work, `out-${bundler}`);
  const build = run('node', [join(work, 'consumer', `build-${bundler}.mjs`), out], join(work, 'consumer'));
  assert.equal(build.status, 0, build.out);
  const files = readdirSync(out, { recursive: true }).map(String).filter((f) => statSync(join(out, f)).isFile());
  assert.ok(files.some((f) => f.endsWith('.wasm')), `${bundler} emitted the .wasm`);
  // The fallback, under a name of the bundler's (webpack's production mode minifies it again).
  const fallback = files.find((f) => f.endsWith('.js') && readFileSync(join(out, f), 'utf8').includes('document.currentScript.f='));
  assert.ok(fallback, `${bundler} emitted the wasm2js fallback: ${files.join(', ')}`);
  for (const wasm of [true, false]) {
    // A sandbox each: both sign the same contract.
    const proxy = await startProxy({ QYS_WWW_DIR: out });
    try {
      const page = await newPage(browser, { wasm });
      const fetched = [];
      page.on('request', (r) => fetched.push(new URL(r.url()).pathname.slice(1)));
      await page.goto(`${proxy.proxy}/`);
      await page.waitForSelector('body[data-ready=true]');
      await page.click('#sign');
      await page.frameLocator('#qys-frame').locator('#qys-sandbox-sign').click();
      await page.waitForSelector('#events li');
      const events = await page.$$eval('#events li', (lis) => lis.map((li) => [li.dataset.event, li.textContent]));
      assert.deepEqual(events, [['signSuccess', '{"contractId":"2603417854124281870"}']], `wasm: ${wasm}`);
      assert.equal(fetched.includes(fallback), !wasm, `the fallback is fetched only without WebAssembly: ${fetched}`);
      await page.close();
    } finally {
      await proxy.stop();
    }
  }
}

test('webpack 5 builds it and the page signs through the sandbox, with and without WebAssembly', () => signThrough('webpack'));
test('Vite 7 builds it and the page signs through the sandbox, with and without WebAssembly', () => signThrough('vite'));

test('TypeScript --strict: typed use compiles, wrong option types do not', () => {
  const dir = join(work, 'consumer', 'ts');
  const tsc = join(work, 'consumer', 'node_modules', '.bin', 'tsc');
  const opts = ['--strict', '--noEmit', '--target', 'ES2020', '--module', 'ESNext', '--moduleResolution', 'Bundler', '--lib', 'ES2020,DOM'];
  const ok = run(tsc, [...opts, 'good.ts'], dir);
  assert.equal(ok.status, 0, ok.out);
  const bad = run(tsc, [...opts, 'bad.ts'], dir);
  assert.notEqual(bad.status, 0);
  for (const line of [4, 5, 6, 7]) assert.match(bad.out, new RegExp(`bad\\.ts\\(${line},`), `line ${line} is refused:\n${bad.out}`);
});

test('TypeScript in a plain browser project (ES2017 + DOM, no @types, library checks on): both entries compile', () => {
  const dir = join(work, 'consumer', 'ts');
  const tsc = join(work, 'consumer', 'node_modules', '.bin', 'tsc');
  const plain = run(tsc, ['-p', 'tsconfig.plain.json'], dir);
  assert.equal(plain.status, 0, plain.out);
});
