// The grounding page end to end in headless Chromium: build it (build.mjs), serve it (serve.mjs),
// upload a synthetic scene as a PNG, type its narrative, press Ground, and read the masks back from
// `window.png`. On wasm they must equal, bit for bit, what the same model (embedded backbone,
// examples/configs/png_tiny.json, seed 0) computes in Node; on WebGPU (SwiftShader, a CPU Vulkan
// driver, on machines without a GPU) at least 99 % of each phrase's pixels must agree with them.
// Screenshots go to examples/browser/artifacts/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { PngGrounder, groundNarrative, phraseColor, type PngGrounderConfig } from '@png/pipeline';
import { encodePng, synthesizeScene } from '@png/png-data';
import PNG_TINY_CONFIG from '../configs/png_tiny.json';
import { launchChromium, serve } from './chromium';

const HERE = __dirname;
const REPO = path.resolve(HERE, '..', '..');
/** Least share of each phrase's pixels on which WebGPU's mask must equal wasm's. */
const WEBGPU_AGREEMENT = 0.99;
const SCENE_SEED = 7;
const IMAGE_SIZE = 64;

interface Grounded {
  text: string;
  span: [number, number];
  mask: Uint8Array;
}

describe('examples/browser: the grounding page', () => {
  let server: { origin: string; stop(): void } | undefined;
  let url: string;
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let browser: BrowserContext | undefined;
  const scene = synthesizeScene(SCENE_SEED, { size: [48, 64] }); // not square: the page letterboxes it
  // The scene's objects, in few enough phrases for one forward (max_phrases 10): WebGPU on SwiftShader is slow.
  const caption = 'In this picture I can see a group of yellow triangles near some trees and a purple square. Behind them there is a blue sky.';
  const png = encodePng(scene.width, scene.height, scene.image);
  let reference: Grounded[];

  beforeAll(async () => {
    const built = spawnSync(process.execPath, [path.join(HERE, 'build.mjs')], { encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`build.mjs failed (exit ${built.status}):\n${built.stderr}`);

    server = await serve();
    url = `${server.origin}/examples/browser/`;
    chromium = await launchChromium();
    browser = chromium.context;

    await setBackend('wasm');
    const backbone = await DiffusionBackbone.fromPretrained(path.join(REPO, 'packages', 'diffusion-backbone', 'models', 'png-tiny-sd'));
    const grounder = PngGrounder.create(backbone, PNG_TINY_CONFIG as Partial<PngGrounderConfig>, { seed: 0 });
    const image = { data: scene.image, width: scene.width, height: scene.height };
    reference = (await groundNarrative(grounder, image, caption, { imageSize: IMAGE_SIZE })).map(({ text, span, mask }) => ({
      text,
      span: [span[0], span[1]],
      mask,
    }));
    grounder.dispose();
    backbone.dispose();
    // Masks that are all 0 or all 1 would make the comparisons below trivially true.
    expect(reference.some(({ mask }) => mask.includes(0) && mask.includes(1))).toBe(true);
  }, 90_000);

  afterAll(async () => {
    await chromium?.close();
    server?.stop();
  });

  /**
   * Opens the page on `backend`, grounds the scene (within `timeout` ms: SwiftShader compiles
   * WebGPU's shaders slowly), returns the backend it shows and the masks, screenshots it.
   */
  async function groundOnPage(backend: 'wasm' | 'webgpu', timeout: number): Promise<{ page: Page; shown: string; phrases: Grounded[] }> {
    if (!browser) throw new Error('chromium did not launch (see beforeAll)');
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    const settle = async (states: string[], timeout: number) => {
      await page.waitForFunction((s) => [...s, 'error'].includes(window.png?.status), states, { timeout }).catch(() => undefined);
      const state = await page.evaluate(() => ({ status: window.png?.status, error: window.png?.error }));
      if (!states.includes(state.status))
        throw new Error(
          `page on ${backend}: status ${state.status}${state.error ? ` (${state.error})` : ''}, expected ${states.join(' or ')}; ${problems.join('; ') || 'no page errors'}`,
        );
    };
    await page.goto(`${url}?backend=${backend}`);
    await settle(['ready'], 60_000);
    await page.setInputFiles('#image', { name: 'scene.png', mimeType: 'image/png', buffer: png });
    await page.fill('#caption', caption);
    await page.click('#ground');
    await settle(['done'], timeout);
    const shown = (await page.textContent('#backend')) ?? '';
    const phrases = await page.evaluate(() =>
      (window.png.result?.phrases ?? []).map(({ text, span, mask }) => ({ text, span: [span[0], span[1]] as [number, number], mask: Array.from(mask) })),
    );
    fs.mkdirSync(path.join(HERE, 'artifacts'), { recursive: true });
    await page.screenshot({ path: path.join(HERE, 'artifacts', `grounding-${backend}.png`), fullPage: true });
    return { page, shown, phrases: phrases.map((p) => ({ ...p, mask: Uint8Array.from(p.mask) })) };
  }

  it('by default runs on wasm, not on WebGPU or WebGL over a CPU emulator (SwiftShader), and shows no result box before a result', async () => {
    const page = await (browser as BrowserContext).newPage();
    try {
      await page.goto(url);
      await page.waitForFunction(() => window.png?.status === 'ready' || window.png?.status === 'error', undefined, { timeout: 60_000 });
      expect(await page.textContent('#backend')).toBe(
        'wasm (webgpu runs on swiftshader, a CPU emulator: slower than wasm; webgl runs on SwiftShader, a CPU emulator: slower than wasm)',
      );
      expect(await page.isVisible('#result')).toBe(false);
    } finally {
      await page.close();
    }
  });

  it("on wasm (tfjs' threaded build: serve.mjs isolates the page) gives the masks of Node bit for bit; the checkboxes hide and show each phrase", async () => {
    const { page, shown, phrases } = await groundOnPage('wasm', 60_000);
    expect(shown).toBe('wasm');
    const wasm = await page.evaluate(() => window.png.wasm);
    expect(wasm?.threadedBuild).toBe(true);
    expect(wasm?.threads).toBeGreaterThanOrEqual(1); // tfjs: half the logical cores, at most 8
    expect(phrases.map((p) => [p.text, p.span])).toEqual(reference.map((p) => [p.text, p.span]));
    for (const [j, p] of phrases.entries()) expect(Buffer.from(p.mask).equals(Buffer.from(reference[j].mask))).toBe(true);

    // Every box unchecked: the overlay is the image itself; one checked: its colour comes back.
    const overlay = () =>
      page.evaluate(() => {
        const canvas = document.getElementById('overlay') as HTMLCanvasElement;
        const context = canvas.getContext('2d');
        if (!context) throw new Error('the #overlay canvas has no 2d context');
        return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
      });
    const boxes = await page.$$('#legend input[type=checkbox]');
    expect(boxes).toHaveLength(phrases.length);
    for (const box of boxes) await box.uncheck();
    const bare = await overlay();
    expect(bare.filter((_, k) => k % 4 !== 3)).toEqual(Array.from(scene.image));
    const j = phrases.findIndex((p) => p.mask.includes(1));
    await boxes[j].check();
    const one = await overlay();
    const { mask } = phrases[j];
    const pixels = [...mask.keys()];
    const changed = new Set(pixels.filter((k) => [0, 1, 2].some((c) => one[4 * k + c] !== bare[4 * k + c])));
    // Half the pixel, half the phrase colour: a pixel within 1 of the colour in every channel may round back to itself.
    const colour = phraseColor(j);
    const visible = pixels.filter((k) => mask[k] && [0, 1, 2].some((c) => Math.abs(scene.image[3 * k + c] - colour[c]) > 1));
    expect([...changed].filter((k) => !mask[k])).toEqual([]);
    expect(visible.filter((k) => !changed.has(k))).toEqual([]);
    await page.close();
  }, 150_000);

  it('on WebGPU agrees with Node on at least 99 % of each phrase mask', async () => {
    const { page, shown, phrases } = await groundOnPage('webgpu', 150_000);
    expect(shown).toMatch(/^webgpu( \(on swiftshader, a CPU emulator: wasm is faster\))?$/); // forced, and said when emulated
    expect(phrases.map((p) => [p.text, p.span])).toEqual(reference.map((p) => [p.text, p.span]));
    const agreement = phrases.map((p, j) => p.mask.reduce((n, v, k) => n + (v === reference[j].mask[k] ? 1 : 0), 0) / p.mask.length);
    for (const a of agreement) expect(a).toBeGreaterThanOrEqual(WEBGPU_AGREEMENT);
    await page.close();
  }, 240_000);
});
