import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectClose, expectDefined, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { DiffusionBackbone, encodePhrases } from '@png/diffusion-backbone';
import { Trainer } from '@png/training';
import { PngGrounder, type PngGrounderConfig } from './png_grounder';
import { SMALL_GROUNDER_CONFIG, TEST_NARRATIVES } from './test_support';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');

const SMALL: Partial<PngGrounderConfig> = { ...SMALL_GROUNDER_CONFIG, eipa: { ...SMALL_GROUNDER_CONFIG.eipa, gate_init: 0.1 } }; // a non-zero EIPA gate so the adapter changes the UNet's stream;

const narratives = TEST_NARRATIVES;

/** The loss and its gradient for every trainable variable, by checkpoint key. */
function lossAndGradients(grounder: PngGrounder, loss: () => tf.Scalar): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const named = grounder.namedVariables();
  const { value, grads } = tf.variableGrads(loss, Object.values(named));
  return { value, grads: Object.fromEntries(Object.entries(named).map(([key, v]) => [key, grads[v.name]])) };
}

describe.each(['cpu', 'wasm'] as const)('PngGrounder training with gradient checkpointing on %s', (backend) => {
  let backbone: DiffusionBackbone;
  let latents: tf.Tensor4D, targets: tf.Tensor4D;
  let phrases: ReturnType<typeof encodePhrases>;
  beforeAll(async () => {
    await setBackend(backend);
    backbone = await DiffusionBackbone.fromPretrained(TINY);
    const images = tf.randomUniform([2, 16, 16, 3], -1, 1, 'float32', 2) as tf.Tensor4D;
    latents = backbone.encodeImages(images); // [2, 8, 8, 4]
    targets = tf.cast(tf.greater(tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 3), 0.5), 'float32') as tf.Tensor4D;
    phrases = encodePhrases(backbone.tokenizer, backbone.textEncoder, narratives, { maxPhrases: expectDefined(SMALL.max_phrases, 'SMALL.max_phrases') });
    images.dispose();
  });
  afterAll(() => {
    tf.dispose([latents, targets, phrases]);
    backbone.dispose();
  });

  it('gives the same loss, bit for bit, and the same gradients for EIPA, MLMA and the decoder; with sequential offload too; no leak', async () => {
    const grounder = PngGrounder.create(backbone, SMALL, { seed: 1 });
    const loss = () => grounder.loss(latents, phrases, targets);
    const plain = lossAndGradients(grounder, loss);
    const disable = grounder.enableGradientCheckpointing();
    for (const offload of [false, true]) {
      const disableOffload = offload ? await backbone.unet.enableSequentialOffload() : undefined;
      const ours = lossAndGradients(grounder, loss);
      expect(await ours.value.data()).toEqual(await plain.value.data());
      for (const [key, g] of Object.entries(plain.grads)) {
        const ref = await g.data();
        let scale = 0;
        for (const v of ref) scale = Math.max(scale, Math.abs(v));
        await expectClose(ours.grads[key], ref, 1e-5 * scale + 1e-9, `${key} (offload: ${offload})`);
      }
      await expectNoLeak(() => lossAndGradients(grounder, loss), `checkpointed grounder gradients (offload: ${offload})`);
      tf.dispose(ours);
      disableOffload?.();
    }
    disable();
    tf.dispose(plain);
    grounder.dispose();
  }, 600_000);

  it('trains with checkpointing and offload without leaking; dispose() turns checkpointing off', async () => {
    const grounder = PngGrounder.create(backbone, SMALL, { seed: 4 });
    grounder.enableGradientCheckpointing();
    const disableOffload = await backbone.unet.enableSequentialOffload();
    const trainer = new Trainer({ variables: grounder.namedVariables(), lossFn: () => grounder.loss(latents, phrases, targets), optimizer: { lr: 1e-3 } });
    await trainer.step(undefined);
    const live = tf.memory().numTensors;
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) losses.push((await trainer.step(undefined)).loss);
    expect(tf.memory().numTensors).toBe(live);
    expect(losses.every(Number.isFinite)).toBe(true);
    trainer.dispose();
    disableOffload();
    grounder.dispose();
    // checkpointing is off again: a forward keeps far more for the gradient than with it on
    const next = PngGrounder.create(backbone, SMALL, { seed: 5 });
    const keptForGradient = () => {
      let added = 0;
      const { value, grads } = lossAndGradients(next, () => {
        const before = tf.memory().numDataBuffers;
        const y = next.loss(latents, phrases, targets);
        added = tf.memory().numDataBuffers - before;
        return y;
      });
      tf.dispose([value, grads]);
      return added;
    };
    const withoutCheckpointing = keptForGradient();
    const disable = next.enableGradientCheckpointing();
    expect(keptForGradient()).toBeLessThan(withoutCheckpointing / 2);
    disable();
    next.dispose();
  }, 600_000);
});
