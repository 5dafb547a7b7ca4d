// scripts/mvp.env's check_nightly against a fake `rustc` on PATH: it picks the pinned nightly by
// its dated name or as `nightly`, never lets rustup install anything, and when neither is the
// pinned one it says which command installs it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from '../e2e/harness.mjs';

const bin = mkdtempSync(join(tmpdir(), 'qys-fake-rustc-'));
const calls = join(bin, 'calls.jsonl');
after(() => rmSync(bin, { recursive: true }));
// `rustc +<toolchain> -V` as rustup's proxy answers it, from FAKE_TOOLCHAINS ({ name: version }).
writeFileSync(join(bin, 'rustc'), `#!/usr/bin/env node
const fs = require('node:fs');
fs.appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ args: process.argv.slice(2), autoInstall: process.env.RUSTUP_AUTO_INSTALL }) + '\\n');
const toolchain = process.argv[2].slice(1);
const version = JSON.parse(process.env.FAKE_TOOLCHAINS)[toolchain];
if (version) console.log(version);
else { console.error("error: toolchain '" + toolchain + "' is not installed"); process.exit(1); }
`);
chmodSync(join(bin, 'rustc'), 0o755);

/** Sources mvp.env and runs `script` in bash with the fake rustc first on PATH. */
function bash(script, toolchains = {}) {
  writeFileSync(calls, '');
  const r = spawnSync('bash', ['-c', `. scripts/mvp.env\n${script}`], {
    cwd: root,
    encoding: 'utf8',
    env: { PATH: `${bin}:${process.env.PATH}`, FAKE_TOOLCHAINS: JSON.stringify(toolchains) },
    // stdin not a socket: bash would take it for rshd and read ~/.bashrc, which may put the real
    // rustc first on PATH.
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const rustc = readFileSync(calls, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return { ...r, rustc };
}

const [pinnedRustc, pinnedName] = bash('printf "%s\\n%s" "$NIGHTLY_RUSTC" "$NIGHTLY_PINNED"').stdout.split('\n');
const OTHER = 'rustc 1.98.0-nightly (0123456789 2026-07-01)';

test('mvp.env names the pinned rustc and its dated toolchain', () => {
  assert.match(pinnedRustc, /^rustc \S+-nightly \(\w+ \d{4}-\d\d-\d\d\)$/);
  assert.match(pinnedName, /^nightly-\d{4}-\d\d-\d\d$/);
});

test('another nightly: fails, saying how to install the pinned one, and installs nothing', () => {
  const r = bash('check_nightly', { nightly: OTHER });
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes(`'${OTHER}'`), r.stderr);
  assert.ok(r.stderr.includes(`rustup toolchain install ${pinnedName} --profile minimal --component rust-src`), r.stderr);
  assert.deepEqual(r.rustc.map((c) => c.args), [[`+${pinnedName}`, '-V'], ['+nightly', '-V']]);
  assert.ok(r.rustc.every((c) => c.autoInstall === '0'), 'rustup must not install a toolchain on its own');
});

test('no nightly at all: the same advice', () => {
  const r = bash('check_nightly');
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes(`says 'nothing'`), r.stderr);
  assert.ok(r.stderr.includes(`rustup toolchain install ${pinnedName}`), r.stderr);
});

test('the dated toolchain installed next to a newer nightly: the build uses it', () => {
  const r = bash('check_nightly && echo "$NIGHTLY"', { nightly: OTHER, [pinnedName]: pinnedRustc });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), pinnedName);
});

test('`nightly` itself is the pinned one: the build uses it', () => {
  const r = bash('check_nightly && echo "$NIGHTLY"', { nightly: pinnedRustc });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'nightly');
});
