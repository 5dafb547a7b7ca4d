// Time from calling personalSign() to the resolved element in headless Chromium, and the part
// of it that is the SDK's own (total minus the proxy request as Resource Timing sees it).
// Usage: node scripts/bench-sdk.mjs [calls]   (after `npm run build` and a release qys-proxy)
import { startProxy, launch } from '../tests/e2e/harness.mjs';

const calls = Number(process.argv[2] ?? 200);
const proxy = await startProxy();
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${proxy.proxy}/`);
  await page.waitForSelector('body[data-ready=true]');
  const samples = await page.evaluate(async (n) => {
    const { qysSdk } = await import('/pkg/index.js');
    const out = [];
    performance.setResourceTimingBufferSize(n * 4);
    for (let i = 0; i < n + 20; i++) {
      const sdk = new qysSdk('/qys/proxy', { query: { i } });
      performance.clearResourceTimings();
      const t0 = performance.now();
      await sdk.personalSign('2603417854124281870', '13700000044', {});
      const total = performance.now() - t0;
      const entry = performance.getEntriesByType('resource').find((e) => e.name.includes('/qys/proxy'));
      sdk.destroy();
      if (i >= 20) out.push({ total, fetch: entry.responseEnd - entry.startTime });
    }
    return out;
  }, calls);
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const fmt = (x) => `${x.toFixed(2)} ms`;
  console.log(`personalSign → element, ${calls} calls after 20 warm-up (headless Chromium, loopback):`);
  console.log(`  median total                        ${fmt(median(samples.map((s) => s.total)))}`);
  console.log(`  median proxy request (fetch start→end) ${fmt(median(samples.map((s) => s.fetch)))}`);
  console.log(`  median SDK's own (total − request)   ${fmt(median(samples.map((s) => s.total - s.fetch)))}`);
} finally {
  await browser.close();
  proxy.stop();
}
