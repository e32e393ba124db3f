// PngGrounder on the webgpu backend (Dawn; without a GPU, chromium's SwiftShader driver: see
// @png/core's setBackend): a full forward and one training step's gradients against the cpu
// backend on the same weights, and no leaks over repeated forwards. Small sizes: SwiftShader and
// cpu-in-jest are slow.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type BackendName } from '@png/core';
import { expectNoLeak, maxAbsDiff, sharedFixturesDir } from '@png/core/testing';
import { mulberry32 } from '@png/node-utils';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, DiffusionBackbone, UNet2DConditionModel } from '@png/diffusion-backbone';
import { PngGrounder, type PngGrounderConfig } from './png_grounder';
import { SMALL_GROUNDER_CONFIG, TEST_NARRATIVES, TINY_UNET_CONFIG } from './test_support';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const SIZE = 16;

const SMALL: Partial<PngGrounderConfig> = {
  ...SMALL_GROUNDER_CONFIG,
  eipa: { ...SMALL_GROUNDER_CONFIG.eipa, gate_init: 0.1 },
  decoder: { ...SMALL_GROUNDER_CONFIG.decoder, num_layers: 1 },
};

const narratives = TEST_NARRATIVES;

/** Per-tensor results of one backend, read back to host memory. */
interface Run {
  loss: number;
  predictions: Float32Array[];
  grads: Record<string, Float32Array>;
}

describe('PngGrounder on webgpu', () => {
  let backbone: DiffusionBackbone;
  let grounder: PngGrounder;
  let images: tf.Tensor4D;
  let targets: tf.Tensor4D;

  beforeAll(async () => {
    // Built once on cpu; tfjs moves each tensor to webgpu the first time webgpu reads it, so both
    // backends run on bit-identical weights.
    await setBackend('cpu');
    const unet = UNet2DConditionModel.create(TINY_UNET_CONFIG, { seed: 7 });
    backbone = DiffusionBackbone.fromComponents({
      unet,
      vae: await AutoencoderKL.fromPretrained(path.join(TINY, 'vae'), { parts: 'encoder' }),
      textEncoder: await CLIPTextModel.fromPretrained(path.join(TINY, 'text_encoder')),
      tokenizer: await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer')),
    });
    grounder = PngGrounder.create(backbone, SMALL, { seed: 8 });
    // From host arrays: a tensor made by tf.cast(bool → float32) on cpu shares the bool's data, and
    // tfjs moves it to webgpu typed bool, which breaks webgpu's shaders (tfjs 4.22).
    const random = mulberry32(1);
    images = tf.tensor4d(
      Float32Array.from({ length: 2 * SIZE * SIZE * 3 }, () => 2 * random() - 1),
      [2, SIZE, SIZE, 3],
    );
    targets = tf.tensor4d(
      Float32Array.from({ length: 2 * SIZE * SIZE * 3 }, () => (random() < 0.5 ? 1 : 0)),
      [2, SIZE, SIZE, 3],
    );
  });
  afterAll(() => {
    grounder?.dispose();
    backbone?.dispose();
    tf.dispose([images, targets]);
  });

  /** A full forward and the gradients of one training step's loss, on `backend`. */
  async function run(backend: BackendName): Promise<Run> {
    await setBackend(backend);
    const out = grounder.forward(images, narratives);
    const predictions = await Promise.all(out.predictions.map((p) => p.data() as Promise<Float32Array>));
    tf.dispose(out);
    const phrases = grounder.encodePhrases(narratives);
    const latents = backbone.encodeImages(images);
    const vars = Object.entries(grounder.namedVariables());
    const { value, grads } = tf.variableGrads(
      () => grounder.loss(latents, phrases, targets),
      vars.map(([, v]) => v),
    );
    const host: Record<string, Float32Array> = {};
    for (const [name, v] of vars) host[name] = (await grads[v.name].data()) as Float32Array;
    const loss = (await value.data())[0];
    tf.dispose([phrases, latents, value, grads]);
    return { loss, predictions, grads: host };
  }

  it('gives the forward and the gradients of a training step of the cpu backend', async () => {
    const t0 = performance.now();
    const cpu = await run('cpu');
    const t1 = performance.now();
    const gpu = await run('webgpu');
    const t2 = performance.now();
    expect(tf.getBackend()).toBe('webgpu');
    const absMax = (a: Float32Array) => maxAbsDiff(a, new Float32Array(a.length));
    // forward: every decoder layer's mask logits, relative to the layer's largest |logit|
    const forwardErr = Math.max(...cpu.predictions.map((p, i) => maxAbsDiff(gpu.predictions[i], p) / absMax(p)));
    // gradients: per variable, max |webgpu − cpu| relative to the variable's largest |cpu| entry.
    // (A batch of 2 needs @png/core's cpu ResizeNearestNeighborGrad: tfjs-backend-cpu's own is wrong
    // from the second sample on, and the UNet's Upsample2D uses it.)
    // Gradients that are zero in exact arithmetic (attention key biases: softmax ignores a shift
    // shared by all keys) come out at rounding level, ~1e-11 here, on both backends: they must stay
    // there (below 1e-6 of the largest gradient entry) instead.
    const largest = Math.max(...Object.values(cpu.grads).map(absMax));
    let gradErr = 0;
    let worst = '';
    const zero: string[] = [];
    for (const [name, g] of Object.entries(cpu.grads)) {
      const scale = absMax(g);
      if (scale < 1e-6 * largest) {
        zero.push(name);
        expect(absMax(gpu.grads[name])).toBeLessThan(1e-6 * largest);
        continue;
      }
      const rel = maxAbsDiff(gpu.grads[name], g) / scale;
      if (!(rel <= gradErr)) [gradErr, worst] = [rel, name];
    }
    expect(zero.every((n) => n.endsWith('to_k.bias'))).toBe(true);
    console.log(
      `PngGrounder webgpu vs cpu: loss ${gpu.loss} vs ${cpu.loss}; forward max rel error ${forwardErr.toExponential(2)}; ` +
        `gradients of ${Object.keys(cpu.grads).length} variables (largest entry ${largest.toExponential(2)}), max rel error ${gradErr.toExponential(2)} (${worst}), ${zero.length} zero in exact arithmetic; cpu ${((t1 - t0) / 1000).toFixed(1)} s, webgpu ${((t2 - t1) / 1000).toFixed(1)} s`,
    );
    expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThanOrEqual(1e-4 * Math.abs(cpu.loss));
    expect(forwardErr).toBeLessThanOrEqual(1e-4);
    expect(gradErr).toBeLessThanOrEqual(1e-4);
  });

  it('does not leak tensors over 20 forwards', async () => {
    await setBackend('webgpu');
    const small = tf.slice(images, [1, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D; // one image: SwiftShader is slow
    const t0 = performance.now();
    await expectNoLeak(async () => {
      for (let i = 0; i < 20; i++) {
        const out = grounder.forward(small, narratives.slice(1));
        await out.predictions[out.predictions.length - 1].data(); // finish each forward before the next
        tf.dispose(out);
      }
    }, '20 PngGrounder.forward calls on webgpu');
    console.log(`PngGrounder.forward on webgpu, one ${SIZE}×${SIZE} image: ${((performance.now() - t0) / 20 / 1000).toFixed(2)} s each, over 20`);
    small.dispose();
  }, 300_000); // SwiftShader on a busy 2-core machine: up to ~6 s per forward
});
