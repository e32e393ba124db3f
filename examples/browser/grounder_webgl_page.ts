/**
 * The page of grounder.webgl.test.ts: a small PngGrounder (the tiny-sd fixture's VAE encoder, text
 * encoder and tokenizer, fetched from ./tiny-sd/, and a small random UNet: the setup of
 * packages/pipeline/src/png_grounder.webgpu.test.ts) runs a forward on the cpu backend, then on
 * webgl, on the same weights. `window.runParity()` returns
 * both, read back to plain arrays, for the test to compare.
 */
import '@tensorflow/tfjs-backend-webgl'; // setBackend does not bundle it (see @png/core's setBackend)
import * as tf from '@tensorflow/tfjs-core';
import { fetchFile, fetchModuleFiles, gpuEmulator, setBackend, type BackendName } from '@png/core';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, DiffusionBackbone, UNet2DConditionModel } from '@png/diffusion-backbone';
import { mulberry32 } from '@png/node-utils';
import { PngGrounder, type PngGrounderConfig } from '@png/pipeline';
import { SMALL_GROUNDER_CONFIG, TEST_NARRATIVES, TINY_UNET_CONFIG } from '../../packages/pipeline/src/test_support';

const SIZE = 16;
const SMALL: Partial<PngGrounderConfig> = {
  ...SMALL_GROUNDER_CONFIG,
  eipa: { ...SMALL_GROUNDER_CONFIG.eipa, gate_init: 0.1 },
  decoder: { ...SMALL_GROUNDER_CONFIG.decoder, num_layers: 1 },
};

/** One backend's results, as plain arrays. */
export interface ParityRun {
  /** What setBackend returned and what tfjs then runs on. */
  backend: { set: BackendName; current: string };
  /** Every decoder layer's mask logits [B, P, h, w], flattened. */
  predictions: number[][];
  /** The shader programs the backend has compiled (webgl), 0 for cpu. */
  programs: number;
  /** setBackend and the forward, first call (webgl compiles its shaders). */
  seconds: number;
}

export interface ParityResult {
  cpu: ParityRun;
  webgl: ParityRun;
  /** The WebGL renderer as the context reports it, and the CPU emulator it names (gpuEmulator()), if any. */
  renderer: string;
  emulator: string | null;
}

declare global {
  interface Window {
    runParity(): Promise<ParityResult>;
  }
}

async function loadGrounder(): Promise<{ backbone: DiffusionBackbone; grounder: PngGrounder }> {
  const text = async (file: string) => new TextDecoder().decode(await fetchFile(new URL(`tiny-sd/tokenizer/${file}`, location.href).href));
  const [vae, textEncoder, vocab, merges] = await Promise.all([
    fetchModuleFiles(new URL('tiny-sd/vae', location.href).href, { weightsFile: 'diffusion_pytorch_model.safetensors' }),
    fetchModuleFiles(new URL('tiny-sd/text_encoder', location.href).href),
    text('vocab.json'),
    text('merges.txt'),
  ]);
  const unet = UNet2DConditionModel.create(TINY_UNET_CONFIG, { seed: 7 });
  const backbone = DiffusionBackbone.fromComponents({
    unet,
    vae: AutoencoderKL.fromFiles(vae, { parts: 'encoder', name: 'tiny-sd/vae' }),
    textEncoder: CLIPTextModel.fromFiles(textEncoder, { name: 'tiny-sd/text_encoder' }),
    tokenizer: CLIPTokenizer.fromFiles({ vocab, merges }, 'tiny-sd/tokenizer'),
  });
  return { backbone, grounder: PngGrounder.create(backbone, SMALL, { seed: 8 }) };
}

window.runParity = async () => {
  // Built once on cpu; tfjs moves each tensor to webgl the first time webgl reads it, so both
  // backends run on the same weights.
  await setBackend('cpu');
  const { backbone, grounder } = await loadGrounder();
  const random = mulberry32(1);
  const images = tf.tensor4d(
    Float32Array.from({ length: 2 * SIZE * SIZE * 3 }, () => 2 * random() - 1),
    [2, SIZE, SIZE, 3],
  );

  const run = async (name: BackendName): Promise<ParityRun> => {
    const started = performance.now();
    const set = await setBackend(name);
    const out = grounder.forward(images, TEST_NARRATIVES);
    const predictions = await Promise.all(out.predictions.map(async (p) => Array.from(await p.data())));
    tf.dispose(out);
    const programs = Object.keys((tf.backend() as { binaryCache?: object }).binaryCache ?? {}).length;
    return { backend: { set, current: tf.getBackend() }, predictions, programs, seconds: (performance.now() - started) / 1000 };
  };

  const cpu = await run('cpu');
  const webgl = await run('webgl');
  const gl = (tf.backend() as unknown as { gpgpu: { gl: WebGLRenderingContext } }).gpgpu.gl;
  const debug = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  const emulator = gpuEmulator();
  grounder.dispose();
  backbone.dispose();
  images.dispose();
  return { cpu, webgl, renderer, emulator };
};
