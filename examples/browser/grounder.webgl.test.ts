// PngGrounder on tfjs' webgl backend, in headless Chromium (WebGL2 on SwiftShader, Chromium's CPU
// driver, where there is no GPU): grounder_webgl_page.ts, bundled by build.mjs and served by
// serve.mjs beside the tiny-sd fixture, runs a forward on cpu and on webgl on the same weights;
// compared here within the forward tolerance of packages/pipeline/src/png_grounder.webgpu.test.ts.
// (Its gradient check too would double the shaders SwiftShader compiles: ~1 min more here.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { maxAbsDiff, sharedFixturesDir } from '@png/core/testing';
import { launchChromium, serve } from './chromium';
import type { ParityResult } from './grounder_webgl_page';

const PAGE =
  '<!doctype html><meta charset="utf-8"><title>PngGrounder on webgl</title><link rel="icon" href="data:,"><script type="module" src="grounder_webgl_page.js"></script>';

describe('PngGrounder on webgl in headless Chromium', () => {
  // The served folder: the page, its bundle, and the fixture (a link: serve.mjs follows it).
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'png-webgl-page-'));
  let server: { origin: string; stop(): void } | undefined;
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;

  beforeAll(async () => {
    fs.writeFileSync(path.join(root, 'index.html'), PAGE);
    fs.symlinkSync(path.join(sharedFixturesDir(), 'tiny-sd'), path.join(root, 'tiny-sd'));
    const built = spawnSync(
      process.execPath,
      [path.join(__dirname, 'build.mjs'), '--entry', path.join(__dirname, 'grounder_webgl_page.ts'), '--outdir', root],
      {
        encoding: 'utf8',
      },
    );
    if (built.status !== 0) throw new Error(`build.mjs failed (exit ${built.status}):\n${built.stderr}`);
    server = await serve(root);
    chromium = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await chromium?.close();
    server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('setBackend("webgl") runs on webgl, names SwiftShader as an emulator, and gives the forward of the cpu backend', async () => {
    if (!chromium || !server) throw new Error('chromium or serve.mjs did not start (see beforeAll)');
    const page = await chromium.context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    await page.goto(`${server.origin}/index.html`);
    await page.waitForFunction(() => typeof window.runParity === 'function', undefined, { timeout: 30_000 });
    const result: ParityResult = await page
      .evaluate(() => window.runParity())
      .catch((e: Error) => {
        throw new Error(`${e.message}; ${problems.join('; ') || 'no page errors'}`);
      });
    const { cpu, webgl } = result;

    expect(cpu.backend).toEqual({ set: 'cpu', current: 'cpu' });
    expect(webgl.backend).toEqual({ set: 'webgl', current: 'webgl' });
    expect(result.emulator).toBe(/swiftshader/i.test(result.renderer) ? 'SwiftShader' : null);

    // every decoder layer's mask logits, relative to the layer's largest |logit|
    const absMax = (a: readonly number[]) => maxAbsDiff(a, new Float32Array(a.length));
    expect(webgl.predictions.map((p) => p.length)).toEqual(cpu.predictions.map((p) => p.length));
    const forwardErr = Math.max(...cpu.predictions.map((p, i) => maxAbsDiff(webgl.predictions[i], p) / absMax(p)));
    console.log(
      `PngGrounder.forward on webgl (${result.renderer}) vs cpu in Chromium: max rel error ${forwardErr.toExponential(2)}; ` +
        `${webgl.programs} WebGL programs compiled; cpu ${cpu.seconds.toFixed(1)} s, webgl ${webgl.seconds.toFixed(1)} s (first call)`,
    );
    expect(forwardErr).toBeLessThanOrEqual(1e-4);
    // setBackend('webgl') makes shaders shape-generic: 730 programs per forward without it
    expect(webgl.programs).toBeLessThan(400);
  }, 240_000); // SwiftShader compiling ~250 shaders on a busy 2-core machine
});
