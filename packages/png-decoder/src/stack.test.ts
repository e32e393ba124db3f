// MLMA → PngDecoder → deep-supervision loss, trained end to end on one fixed synthetic batch.
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type FeatureMap } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { MultiLevelMutualAggregation } from '@png/mlma';
import { PngDecoder, deepSupervisionLoss } from './index';

/** Two square masks on a 16×16 target grid (phrase 0: rows/cols 2–7, phrase 1: rows/cols 9–14), phrase 2 is padding. */
function squareTargets(): tf.Tensor4D {
  const data: number[] = [];
  for (let y = 0; y < 16; y++)
    for (let x = 0; x < 16; x++) {
      data.push(y >= 2 && y <= 7 && x >= 2 && x <= 7 ? 1 : 0, y >= 9 && y <= 14 && x >= 9 && x <= 14 ? 1 : 0, 0);
    }
  return tf.tensor4d(data, [1, 16, 16, 3]);
}

describe.each(['wasm'] as const)('MLMA + PngDecoder stack on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('overfits a fixed synthetic batch (loss falls ≥ 90% within 100 adam steps) without leaking', async () => {
    const mlma = MultiLevelMutualAggregation.create(
      { image_channels: [8, 8, 8], image_strides: [32, 16, 8], phrase_dim: 12, hidden_dim: 16, num_heads: 2, norm_groups: 4, mask_dim: 16 },
      { seed: 1 },
    );
    const decoder = PngDecoder.create(
      { hidden_dim: 16, num_layers: 2, num_heads: 2, dim_feedforward: 32, mask_dim: 16, in_channels: 16, max_phrases: 4 },
      { seed: 2 },
    );
    const images: FeatureMap[] = [2, 4, 8].map((s, i) => ({
      tensor: tf.randomNormal([1, s, s, 8], 0, 1, 'float32', 10 + i) as tf.Tensor4D,
      stride: 32 / 2 ** i,
    }));
    const phrases = tf.randomNormal([1, 3, 12], 0, 1, 'float32', 20) as tf.Tensor3D;
    const phraseMask = tf.tensor2d([[1, 1, 0]]);
    const targets = squareTargets();
    const vars = [...mlma.trainableVariables(), ...decoder.trainableVariables()];
    const optimizer = tf.train.adam(1e-2);
    const lossFn = () => {
      const fused = mlma.forward({ images, phrases: { tensor: phrases, mask: phraseMask } });
      const { predictions } = decoder.forward(fused);
      return deepSupervisionLoss(predictions, targets, phraseMask);
    };

    const losses: number[] = [];
    const live: number[] = [];
    const t0 = Date.now();
    let steps = 0;
    for (; steps < 100; steps++) {
      const loss = expectDefined(optimizer.minimize(lossFn, true, vars), 'the returned loss');
      losses.push((await loss.data())[0]);
      loss.dispose();
      live.push(tf.memory().numTensors);
      if (losses[steps] <= 0.1 * losses[0]) break;
    }
    const ms = Date.now() - t0;
    // eslint-disable-next-line no-console
    console.log(
      `stack overfit on ${backend}: loss ${losses[0].toFixed(4)} → ${losses[losses.length - 1].toFixed(4)} in ${losses.length} steps (${(ms / losses.length).toFixed(0)} ms/step), ${vars.length} variables, ${mlma.numParameters() + decoder.numParameters()} parameters`,
    );
    expect(losses[losses.length - 1]).toBeLessThanOrEqual(0.1 * losses[0]);
    // adam's slots exist after the first step; from then on the live tensor count is constant
    expect(new Set(live.slice(1)).size).toBe(1);

    optimizer.dispose();
    tf.dispose([...images.map((i) => i.tensor), phrases, phraseMask, targets]);
    mlma.dispose();
    decoder.dispose();
  });
});
