import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type FeatureMap, type PhraseFeatures } from '@png/core';
import { expectNoLeak, maxAbsDiff } from '@png/core/testing';
import { MultiLevelMutualAggregation, type MlmaConfig } from './index';

/** Three levels, strides 32/16/8 on a 64×64 "image" → maps 2×2, 4×4, 8×8. */
const TINY: Partial<MlmaConfig> = { image_channels: [8, 8, 4], phrase_dim: 12, hidden_dim: 16, num_heads: 2, norm_groups: 4, mask_dim: 8 };
const SIZES = [2, 4, 8];

/** Two samples, three phrase slots (the second sample's last is padding); `phraseSeed` varies the phrases of level 2 only. */
function inputs(phraseSeed = 0): { images: FeatureMap[]; phrases: PhraseFeatures[] } {
  const mask = tf.tensor2d([
    [1, 1, 1],
    [1, 1, 0],
  ]);
  return {
    images: [8, 8, 4].map((c, i) => ({ tensor: tf.randomNormal([2, SIZES[i], SIZES[i], c], 0, 1, 'float32', 1 + i) as tf.Tensor4D, stride: 32 / 2 ** i })),
    phrases: [0, 1, 2].map((i) => ({ tensor: tf.randomNormal([2, 3, 12], 0, 1, 'float32', 10 + i + (i === 2 ? phraseSeed : 0)) as tf.Tensor3D, mask })),
  };
}

const data = async (t: tf.Tensor) => (await t.data()) as Float32Array;

describe('MLMA rounds and cross-level phrase attention', () => {
  beforeAll(() => setBackend('cpu'));

  it('validates the new fields before allocating anything, naming them', () => {
    const before = tf.memory().numTensors;
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, rounds: 0 })).toThrow('Error in MlmaConfig.rounds: expected a positive integer, got 0');
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, rounds: 2, mutual: false })).toThrow(
      'Error in MlmaConfig.rounds: expected 1 when mutual is false',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, cross_level: 1 } as never)).toThrow(
      'Error in MlmaConfig.cross_level: expected a boolean, got 1',
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names round r ≥ 1 levels.<i>.rounds.<r>.* and the cross-level attention cross_level.<r>.*', () => {
    const one = MultiLevelMutualAggregation.create(TINY);
    const two = MultiLevelMutualAggregation.create({ ...TINY, rounds: 2, cross_level: true });
    expect(one.parameters.keys().some((k) => k.includes('rounds') || k.startsWith('cross_level'))).toBe(false);
    const added = two.parameters.keys().filter((k) => !one.parameters.keys().includes(k));
    expect(added).toEqual(
      expect.arrayContaining([
        'levels.0.rounds.1.image_from_phrase.to_q.weight',
        'levels.2.rounds.1.phrase_from_image_norm.bias',
        'cross_level.0.attention.to_out.weight',
        'cross_level.1.norm.weight',
      ]),
    );
    const attention = 4 * (16 * 16 + 16); // to_q, to_k, to_v, to_out
    const norm = 2 * 16;
    expect(two.numParameters() - one.numParameters()).toBe(3 * 2 * (attention + norm) + 2 * (attention + norm));
    one.dispose();
    two.dispose();
  });

  it('round 2 reads what round 1 left: with its outputs closed it only renormalises', async () => {
    const x = inputs();
    const one = MultiLevelMutualAggregation.create(TINY, { seed: 3 });
    const two = MultiLevelMutualAggregation.create({ ...TINY, rounds: 2 }, { seed: 3 }); // the same weights for the shared keys
    const a = one.forward(x);
    const close = async (level: MultiLevelMutualAggregation) => {
      for (const k of level.parameters.keys().filter((k) => /rounds\.1\..*to_out/.test(k)))
        (level.parameters.get(k) as tf.Variable).assign(tf.zerosLike(level.parameters.get(k)));
    };
    const open = two.forward(x);
    expect(maxAbsDiff(await data(open.phrases), await data(a.phrases))).toBeGreaterThan(1e-2);
    await close(two);
    const closed = two.forward(x);
    // LayerNorm(LayerNorm(v)) ≈ LayerNorm(v): round 2 passes round 1's states through
    expect(maxAbsDiff(await data(closed.phrases), await data(a.phrases))).toBeLessThan(1e-3);
    expect(maxAbsDiff(await data(closed.maskFeatures), await data(a.maskFeatures))).toBeLessThan(1e-3);
    tf.dispose([x.images.map((i) => i.tensor), x.phrases.map((p) => p.tensor), x.phrases[0].mask, a, open, closed] as unknown as tf.TensorContainer);
    one.dispose();
    two.dispose();
  });

  it('lets the coarsest level see the finest level’s phrases only with cross_level, before a later round', async () => {
    const coarsest = async (config: Partial<MlmaConfig>, phraseSeed: number) => {
      const m = MultiLevelMutualAggregation.create({ ...TINY, ...config }, { seed: 4 });
      const x = inputs(phraseSeed);
      const out = m.forward(x);
      const d = await data(out.pixels[0].tensor); // the top of the top-down path: level 0 alone
      tf.dispose([x.images.map((i) => i.tensor), x.phrases.map((p) => p.tensor), x.phrases[0].mask, out] as unknown as tf.TensorContainer);
      m.dispose();
      return d;
    };
    const changes = async (config: Partial<MlmaConfig>) => maxAbsDiff(await coarsest(config, 0), await coarsest(config, 100)) > 1e-4;
    expect(await changes({ rounds: 2 })).toBe(false);
    expect(await changes({ cross_level: true })).toBe(false); // one round: the mixed phrase states feed only the fusion
    expect(await changes({ rounds: 2, cross_level: true })).toBe(true);
    expect(await changes({ mutual: false, cross_level: true })).toBe(false);
  });

  it('a padding phrase with random features changes no real output, across levels and rounds', async () => {
    const m = MultiLevelMutualAggregation.create({ ...TINY, rounds: 2, cross_level: true, phrase_fusion: 'gate' }, { seed: 5 });
    const x = inputs();
    const base = m.forward(x);
    const mask = tf.concat([x.phrases[0].mask, tf.zeros([2, 1])], 1) as tf.Tensor2D;
    const padded = {
      images: x.images,
      phrases: x.phrases.map((p, i) => ({ tensor: tf.concat([p.tensor, tf.randomNormal([2, 1, 12], 0, 3, 'float32', 99 + i)], 1) as tf.Tensor3D, mask })),
    };
    const out = m.forward(padded);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(await data(out.pixels[i].tensor), await data(base.pixels[i].tensor))).toBeLessThanOrEqual(1e-5);
    const real = tf.slice(out.phrases, [0, 0, 0], [2, 3, 16]);
    expect(maxAbsDiff(await data(real), await data(base.phrases))).toBeLessThanOrEqual(1e-5);
    await expectNoLeak(() => m.forward(x), 'MLMA forward with rounds and cross_level');
    tf.dispose([
      real,
      base,
      out,
      padded.phrases.map((p) => p.tensor),
      mask,
      x.images.map((i) => i.tensor),
      x.phrases.map((p) => p.tensor),
      x.phrases[0].mask,
    ] as unknown as tf.TensorContainer);
    m.dispose();
  });

  it('gets gradients to every new weight', async () => {
    const m = MultiLevelMutualAggregation.create({ ...TINY, rounds: 2, cross_level: true }, { seed: 6 });
    const x = inputs();
    const w = tf.randomNormal([2, 3, 16], 0, 1, 'float32', 7);
    const wm = tf.randomNormal([2, 8, 8, 8], 0, 1, 'float32', 8);
    const keys = m.parameters.keys().filter((k) => k.includes('rounds.') || k.startsWith('cross_level.'));
    const vars = keys.map((k) => m.parameters.get(k) as tf.Variable);
    const { grads, value } = tf.variableGrads(
      () =>
        tf.tidy(() => {
          const out = m.forward(x);
          return tf.add(tf.sum(tf.mul(out.phrases, w)), tf.sum(tf.mul(out.maskFeatures, wm))) as tf.Scalar;
        }),
      vars,
    );
    for (const [i, k] of keys.entries()) expect([k, (await tf.max(tf.abs(grads[vars[i].name])).data())[0] > 0]).toEqual([k, true]);
    tf.dispose([grads, value, w, wm, x.images.map((i) => i.tensor), x.phrases.map((p) => p.tensor), x.phrases[0].mask] as unknown as tf.TensorContainer);
    m.dispose();
  });

  it('round-trips bit-identically; weights of more rounds under a 1-round config are named', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlma-rounds-'));
    const m = MultiLevelMutualAggregation.create({ ...TINY, rounds: 2, cross_level: true }, { seed: 9 });
    await m.save(dir);
    const loaded = await MultiLevelMutualAggregation.fromPretrained(dir);
    expect(loaded.config).toEqual(m.config);
    const x = inputs();
    const a = m.forward(x);
    const b = loaded.forward(x);
    expect(maxAbsDiff(await data(a.phrases), await data(b.phrases))).toBe(0);
    expect(maxAbsDiff(await data(a.maskFeatures), await data(b.maskFeatures))).toBe(0);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...m.config, rounds: 1, cross_level: false }));
    await expect(MultiLevelMutualAggregation.fromPretrained(dir)).rejects.toThrow(/unexpected tensors '(levels\.0\.rounds\.1|cross_level\.0)/);
    tf.dispose([a, b, x.images.map((i) => i.tensor), x.phrases.map((p) => p.tensor), x.phrases[0].mask] as unknown as tf.TensorContainer);
    m.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
