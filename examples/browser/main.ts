/**
 * The grounding page: pick an image, type a narrative, see one mask per noun phrase over the image
 * (a legend with a checkbox per phrase). Runs on WebGPU when the browser has a GPU adapter, else on
 * WebGL when it has a GPU, else on wasm (on a CPU emulator such as SwiftShader, WebGPU and WebGL
 * are slower than wasm).
 *
 * Query parameters (URLs are relative to this page):
 *   backend=webgpu|webgl|wasm  force a backend (default: webgpu on a GPU, else webgl on a GPU, else wasm)
 *   model=URL            a diffusers pipeline folder (default: the embedded tiny backbone)
 *   run=URL              a `png train` run folder: its grounder/ and its run.json's image size
 *   grounder=URL         a folder written by PngGrounder.save (with size=N, default 64)
 *   seed=N               without run/grounder: the seed of an untrained grounder (default 0)
 * The page exposes its state as `window.png` (status, backend, result masks) for tests.
 */
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgl'; // setBackend does not bundle the GPU backends: the page imports them
import '@tensorflow/tfjs-backend-webgpu'; // registers itself where the browser has WebGPU
import { fetchFile, joinUrl, setBackend, gpuEmulator, type BackendName } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { PngGrounder, groundNarrative, phraseColor, type GroundedPhrase, type PngGrounderConfig } from '@png/pipeline';
import type { RgbImage } from '@png/png-data';
import PNG_TINY_CONFIG from '../configs/png_tiny.json';

/** The image side the demo trains at (`png train`'s default --image-size). */
const DEFAULT_IMAGE_SIZE = 64;
const MASK_ALPHA = 0.5;

interface PageState {
  status: 'loading' | 'ready' | 'grounding' | 'done' | 'error';
  backend?: BackendName;
  /** On wasm: XNNPACK's threads, and whether tfjs runs its threaded build (the page is cross-origin isolated: serve.mjs). */
  wasm?: { threads: number; threadedBuild: boolean };
  imageSize?: number;
  error?: string;
  result?: { width: number; height: number; milliseconds: number; phrases: GroundedPhrase[] };
}

declare global {
  interface Window {
    png: PageState;
  }
}

const state: PageState = { status: 'loading' };
window.png = state;
const params = new URLSearchParams(location.search);
const here = (url: string): string => new URL(url, location.href).href;
const element = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

function show(status: PageState['status'], message: string): void {
  state.status = status;
  const p = element('status');
  p.textContent = message;
  p.classList.toggle('error', status === 'error');
}

function fail(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  state.error = message;
  show('error', `Error: ${message}`);
  console.error(e);
}

/** The backends the page offers, in the order it tries them. */
const PAGE_BACKENDS = ['webgpu', 'webgl', 'wasm'] as const;

/**
 * WebGPU on a GPU adapter, else WebGL on a GPU, else wasm: the GPU backends are skipped when they
 * run on a CPU emulator such as SwiftShader (both slower than wasm there; measured in README.md);
 * ?backend= forces one. The note says why a backend was passed over.
 */
async function chooseBackend(): Promise<{ backend: BackendName; note: string }> {
  const requested = params.get('backend');
  if (requested !== null && !(PAGE_BACKENDS as readonly string[]).includes(requested))
    throw new Error(`?backend=${requested}: expected one of ${PAGE_BACKENDS.join(', ')}`);
  // tfjs-backend-wasm fetches its .wasm binaries from here (serve.mjs serves the repository root).
  setWasmPaths(here('../../node_modules/@tensorflow/tfjs-backend-wasm/dist/'));
  if (requested) {
    const backend = await setBackend(requested as BackendName);
    const emulator = gpuEmulator();
    return { backend, note: emulator ? ` (on ${emulator}, a CPU emulator: wasm is faster)` : '' };
  }
  const passed: string[] = [];
  for (const gpu of ['webgpu', 'webgl'] as const) {
    try {
      const backend = await setBackend(gpu);
      const emulator = gpuEmulator();
      if (!emulator) return { backend, note: passed.length ? ` (${passed.join('; ')})` : '' };
      passed.push(`${gpu} runs on ${emulator}, a CPU emulator: slower than wasm`);
    } catch (e) {
      passed.push(`no ${gpu}: ${(e as Error).message}`);
    }
  }
  return { backend: await setBackend('wasm'), note: ` (${passed.join('; ')})` };
}

/** The integer query parameter `name` (≥ `min`), or `fallback` when absent. */
function intParam(name: string, fallback: number, min: number): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`?${name}=${raw}: expected an integer ≥ ${min}`);
  return n;
}

/** The grounder the query names (a run, a saved grounder) or an untrained one, and the image side it reads. */
async function loadGrounder(backbone: DiffusionBackbone): Promise<{ grounder: PngGrounder; imageSize: number; label: string }> {
  const run = params.get('run');
  const saved = params.get('grounder');
  if (run !== null) {
    const runFile = joinUrl(here(run), 'run.json');
    const settings = JSON.parse(new TextDecoder().decode(await fetchFile(runFile))) as { training?: { image_size?: unknown } };
    const imageSize = settings.training?.image_size;
    if (!Number.isInteger(imageSize)) throw new Error(`${runFile}: training.image_size is missing; is this the folder of a png train run?`);
    return { grounder: await PngGrounder.fromUrl(joinUrl(here(run), 'grounder'), backbone), imageSize: imageSize as number, label: `${run}/grounder` };
  }
  if (saved !== null) return { grounder: await PngGrounder.fromUrl(here(saved), backbone), imageSize: intParam('size', DEFAULT_IMAGE_SIZE, 1), label: saved };
  const seed = intParam('seed', 0, 0);
  return {
    grounder: PngGrounder.create(backbone, PNG_TINY_CONFIG as Partial<PngGrounderConfig>, { seed }),
    imageSize: intParam('size', DEFAULT_IMAGE_SIZE, 1),
    label: `untrained (seed ${seed}; pass ?run=<a png train run folder> for a trained one)`,
  };
}

/** The RGB pixels of an image file, as the browser decodes it (no colour management, no premultiplication). */
async function decodeImage(file: File): Promise<RgbImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`${file.name}: not an image this browser can decode (${(e as Error).message})`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
  if (!context) throw new Error('this browser gives an OffscreenCanvas no 2d context');
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height * 3);
  for (let k = 0; k < width * height; k++) {
    data[3 * k] = rgba[4 * k];
    data[3 * k + 1] = rgba[4 * k + 1];
    data[3 * k + 2] = rgba[4 * k + 2];
  }
  return { data, width, height };
}

/** The image with the checked phrases' masks blended in their colours, drawn into #overlay. */
function drawOverlay(image: RgbImage, phrases: readonly GroundedPhrase[], shown: readonly boolean[]): void {
  const canvas = element<HTMLCanvasElement>('overlay');
  canvas.width = image.width;
  canvas.height = image.height;
  const scale = Math.max(1, Math.floor(512 / Math.max(image.width, image.height)));
  canvas.style.width = `${image.width * scale}px`;
  canvas.style.height = `${image.height * scale}px`;
  const pixels = new ImageData(image.width, image.height);
  const n = image.width * image.height;
  for (let k = 0; k < n; k++) {
    let [r, g, b] = image.data.subarray(3 * k, 3 * k + 3);
    phrases.forEach(({ mask }, j) => {
      if (!shown[j] || !mask[k]) return;
      const [cr, cg, cb] = phraseColor(j);
      r = (1 - MASK_ALPHA) * r + MASK_ALPHA * cr;
      g = (1 - MASK_ALPHA) * g + MASK_ALPHA * cg;
      b = (1 - MASK_ALPHA) * b + MASK_ALPHA * cb;
    });
    pixels.data.set([r, g, b, 255], 4 * k);
  }
  const context = canvas.getContext('2d');
  if (!context) throw new Error('the overlay canvas has no 2d context');
  context.putImageData(pixels, 0, 0);
}

/** The legend: per phrase a checkbox, its colour, its text and its share of the image. */
function drawLegend(image: RgbImage, phrases: readonly GroundedPhrase[]): void {
  const shown = phrases.map(() => true);
  const legend = element('legend');
  legend.replaceChildren(
    ...phrases.map(({ text, mask }, j) => {
      const item = document.createElement('li');
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = true;
      box.dataset.phrase = String(j);
      box.addEventListener('change', () => {
        shown[j] = box.checked;
        drawOverlay(image, phrases, shown);
      });
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = `rgb(${phraseColor(j).join(',')})`;
      const area = document.createElement('span');
      area.className = 'area';
      area.textContent = ` ${((100 * mask.reduce((s, v) => s + (v ? 1 : 0), 0)) / mask.length).toFixed(1)} %`;
      label.append(box, swatch, text, area);
      item.append(label);
      return item;
    }),
  );
  drawOverlay(image, phrases, shown);
}

async function main(): Promise<void> {
  const { backend, note } = await chooseBackend();
  state.backend = backend;
  if (backend === 'wasm') state.wasm = { threads: getThreadsCount(), threadedBuild: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') };
  element('backend').textContent = backend + note;
  const modelUrl = params.get('model') ?? '../../packages/diffusion-backbone/models/png-tiny-sd';
  element('model').textContent = modelUrl;
  show('loading', 'Loading the backbone…');
  const backbone = await DiffusionBackbone.fromUrl(here(modelUrl));
  show('loading', 'Loading the grounder…');
  const { grounder, imageSize, label } = await loadGrounder(backbone);
  if (imageSize % backbone.imageMultiple !== 0)
    throw new Error(`image size ${imageSize} (?size= or the run's image_size) is not a multiple of ${backbone.imageMultiple}, the backbone's downsampling`);
  state.imageSize = imageSize;
  element('grounder').textContent = `${label}, images letterboxed to ${imageSize}×${imageSize}`;

  const button = element<HTMLButtonElement>('ground');
  element<HTMLFormElement>('form').addEventListener('submit', (event) => {
    event.preventDefault();
    const file = element<HTMLInputElement>('image').files?.[0];
    const caption = element<HTMLTextAreaElement>('caption').value;
    if (!file) return fail(new Error('pick an image first'));
    button.disabled = true;
    show('grounding', `Grounding on ${backend}…`);
    (async () => {
      const image = await decodeImage(file);
      const started = performance.now();
      const phrases = await groundNarrative(grounder, image, caption, { imageSize });
      const milliseconds = performance.now() - started;
      state.result = { width: image.width, height: image.height, milliseconds, phrases };
      element('result').hidden = false;
      drawLegend(image, phrases);
      show('done', `${phrases.length} noun phrases grounded on ${backend} in ${(milliseconds / 1000).toFixed(2)} s (${image.width}×${image.height} image).`);
    })()
      .catch(fail)
      .finally(() => (button.disabled = false));
  });
  button.disabled = false;
  show('ready', 'Ready: pick an image, type a narrative, press Ground.');
}

main().catch(fail);
