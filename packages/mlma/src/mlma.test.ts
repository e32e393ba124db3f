import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type FeatureMap, type PhraseFeatures } from '@png/core';
import { expectClose, expectDefined, expectNoLeak, maxAbsDiff } from '@png/core/testing';
import { MultiLevelMutualAggregation, resolveMlmaConfig, type MlmaConfig } from './index';
import { gradCheck } from '@png/core/testing';
import { resize } from '@png/core';

/** A tiny three-level config: strides 32/16/8 on a 64×64 "image" → maps 2×2, 4×4, 8×8. */
const TINY: Partial<MlmaConfig> = {
  image_channels: [8, 8, 4],
  phrase_dim: 12,
  hidden_dim: 16,
  num_heads: 2,
  norm_groups: 4,
  mask_dim: 8,
};
const SIZES = [2, 4, 8];

function inputs(b: number, p: number, seed = 0, config: Partial<MlmaConfig> = TINY) {
  const ch = expectDefined(config.image_channels, 'config.image_channels');
  const images: FeatureMap[] = ch.map((c, i) => ({
    tensor: tf.randomNormal([b, SIZES[i], SIZES[i], c], 0, 1, 'float32', seed + i) as tf.Tensor4D,
    stride: 32 / 2 ** i,
  }));
  const mask = tf.tensor2d(
    Array.from({ length: b * p }, (_, k) => (k % p < p - (k >= p ? 1 : 0) ? 1 : 0)),
    [b, p],
  ); // sample 1 has one padding phrase
  const phrases: PhraseFeatures[] = ch.map((_, i) => ({
    tensor: tf.randomNormal([b, p, expectDefined(config.phrase_dim, 'config.phrase_dim')], 0, 1, 'float32', seed + 10 + i) as tf.Tensor3D,
    mask,
  }));
  return { images, phrases, mask };
}

const disposeInputs = (x: ReturnType<typeof inputs>) => tf.dispose([...x.images.map((i) => i.tensor), ...x.phrases.map((p) => p.tensor), x.mask]);

describe('MlmaConfig', () => {
  beforeAll(() => setBackend('cpu'));
  it('validates before any weight is allocated', () => {
    const before = tf.memory().numTensors;
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, hiden_dim: 16 } as Record<string, unknown>)).toThrow(
      'Error in MlmaConfig.hiden_dim: expected a known field (did you mean \'hidden_dim\'?), got "an unknown field"',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, num_heads: 7 })).toThrow(
      'Error in MlmaConfig.num_heads: expected a divisor of hidden_dim (16), got 7',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, image_channels: [] })).toThrow(
      'Error in MlmaConfig.image_channels: expected a non-empty array of positive integers (one per level, coarsest first), got []',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, norm_groups: 5 })).toThrow(
      'Error in MlmaConfig.norm_groups: expected a divisor of hidden_dim (16), got 5',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, image_strides: [8, 16, 32] })).toThrow('Error in MlmaConfig.image_strides');
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, phrase_fusion: 'max' as 'gate' })).toThrow(
      "Error in MlmaConfig.phrase_fusion: expected 'softmax' or 'gate', got \"max\"",
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('derives the SD strides 64/32/16/8 by default', () => {
    const m = MultiLevelMutualAggregation.create({
      image_channels: [16, 16, 16, 16],
      phrase_dim: 8,
      hidden_dim: 16,
      num_heads: 2,
      norm_groups: 4,
      mask_dim: 8,
    });
    expect(m.outputShape()).toEqual([16, 16, 16, 16].map((channels, i) => ({ channels, stride: 64 / 2 ** i })));
    expect(m.maskFeaturesShape()).toEqual({ channels: 8, stride: 8 });
    expect(resolveMlmaConfig({ image_channels: [4] }).hidden_dim).toBe(256);
    m.dispose();
  });
});

describe('resize', () => {
  beforeAll(() => setBackend('cpu'));
  it('matches torch F.interpolate (align_corners=False) for bilinear and nearest', async () => {
    const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    // torch: F.interpolate(x.view(1,1,2,2), size=(4,4), mode='bilinear') rows: [1,1.25,1.75,2], [1.5,1.75,2.25,2.5], …
    const up = resize(x, [4, 4], 'bilinear');
    await expectClose(up, [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4], 1e-6);
    const near = resize(x, [4, 4], 'nearest');
    await expectClose(near, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4], 0);
    tf.dispose([x, up, near]);
  });
});

describe.each(['cpu', 'wasm'] as const)('MultiLevelMutualAggregation on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it.each([
    ['mutual, softmax fusion', {}],
    ['MLMA off (mutual: false)', { mutual: false }],
    ['gated phrase fusion', { phrase_fusion: 'gate' as const }],
  ])('%s: shapes, outputShape and no leak', async (_label, extra) => {
    const m = MultiLevelMutualAggregation.create({ ...TINY, ...extra }, { seed: 3 });
    const x = inputs(2, 3);
    const out = m.forward(x);
    expect(out.pixels.map((p) => p.tensor.shape)).toEqual(SIZES.map((s) => [2, s, s, 16]));
    expect(out.pixels.map((p) => ({ channels: p.tensor.shape[3], stride: p.stride }))).toEqual(m.outputShape());
    expect(out.maskFeatures.shape).toEqual([2, 8, 8, 8]);
    expect(out.phrases.shape).toEqual([2, 3, 16]);
    expect(out.phraseMask.shape).toEqual([2, 3]);
    // padding rows of the fused phrases are exactly 0
    const ph = await out.phrases.data();
    expect(Array.from(ph.slice((3 + 2) * 16, (3 + 3) * 16)).every((v) => v === 0)).toBe(true);
    tf.dispose(out as unknown as tf.TensorContainer);
    await expectNoLeak(() => m.forward(x), 'MultiLevelMutualAggregation.forward');
    // one phrase tensor shared by all levels (static prompting)
    await expectNoLeak(() => m.forward({ ...x, phrases: x.phrases[0] }), 'forward(shared phrases)');
    disposeInputs(x);
    m.dispose();
  });

  it('MLMA off allocates no attention weights', () => {
    const on = MultiLevelMutualAggregation.create(TINY);
    const off = MultiLevelMutualAggregation.create({ ...TINY, mutual: false });
    expect(off.parameters.keys().some((k) => k.includes('_from_'))).toBe(false);
    expect(on.parameters.keys()).toContain('levels.0.image_from_phrase.to_q.weight');
    expect(on.numParameters() - off.numParameters()).toBe(3 * (2 * 4 * (16 * 16 + 16) + 2 * 2 * 16));
    on.dispose();
    off.dispose();
  });

  it('a padding phrase with random features leaves every real output unchanged', async () => {
    const m = MultiLevelMutualAggregation.create({ ...TINY, phrase_fusion: 'gate' }, { seed: 5 });
    const x = inputs(2, 3, 7);
    const base = m.forward(x);
    // append a fourth, padding phrase with random features at every level
    const mask = tf.concat([x.mask, tf.zeros([2, 1])], 1) as tf.Tensor2D;
    const padded = {
      images: x.images,
      phrases: x.phrases.map((p, i) => ({ tensor: tf.concat([p.tensor, tf.randomNormal([2, 1, 12], 0, 3, 'float32', 99 + i)], 1) as tf.Tensor3D, mask })),
    };
    const out = m.forward(padded);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(await out.pixels[i].tensor.data(), await base.pixels[i].tensor.data())).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(await out.maskFeatures.data(), await base.maskFeatures.data())).toBeLessThanOrEqual(1e-5);
    const real = tf.slice(out.phrases, [0, 0, 0], [2, 3, 16]);
    expect(maxAbsDiff(await real.data(), await base.phrases.data())).toBeLessThanOrEqual(1e-5);
    tf.dispose([real, base as unknown as tf.TensorContainer, out as unknown as tf.TensorContainer, padded.phrases.map((p) => p.tensor), mask]);
    disposeInputs(x);
    m.dispose();
  });

  it('checks its inputs', () => {
    const m = MultiLevelMutualAggregation.create(TINY);
    const x = inputs(1, 2);
    expect(() => m.forward({ ...x, images: x.images.slice(1) })).toThrow('expected 3 image levels');
    expect(() => m.forward({ ...x, images: [x.images[1], x.images[1], x.images[2]] })).toThrow('images[0] has stride 16, expected 32');
    expect(() => m.forward({ ...x, images: [x.images[0], x.images[2], x.images[2]] })).toThrow('images[1] must be NHWC [1, H, W, 8], got [1,8,8,4]');
    const narrow = tf.zeros([1, 2, 5]) as tf.Tensor3D;
    const otherMask = tf.ones([1, 3]) as tf.Tensor2D;
    expect(() => m.forward({ ...x, phrases: { tensor: narrow, mask: x.mask } })).toThrow('phrases[0].tensor must be [1, 2, 12]');
    expect(() => m.forward({ ...x, phrases: x.phrases.slice(1) })).toThrow('expected 3 phrase features (one per level) or one, got 2');
    expect(() => m.forward({ ...x, phrases: [x.phrases[0], { ...x.phrases[1], mask: otherMask }, x.phrases[2]] })).toThrow(
      'phrases[1].mask is [1,3]; every level has the phrases of phrases[0] (mask [1,2])',
    );
    tf.dispose([narrow, otherMask]);
    disposeInputs(x);
    m.dispose();
  });
});

describe('MultiLevelMutualAggregation gradients (cpu, float32 central differences)', () => {
  beforeAll(() => setBackend('cpu'));

  it.each([
    ['softmax', {}],
    ['gate', { phrase_fusion: 'gate' as const }],
  ])('match finite differences (%s fusion)', async (_l, extra) => {
    const m = MultiLevelMutualAggregation.create({ ...TINY, ...extra, norm_groups: 2 }, { seed: 11 });
    const x = inputs(1, 3, 21);
    const probes = tf.tidy(() => {
      const out = m.forward(x);
      return [
        ...out.pixels.map((p) => tf.randomNormal(p.tensor.shape, 0, 1, 'float32', 5)),
        tf.randomNormal(out.maskFeatures.shape, 0, 1, 'float32', 6),
        tf.randomNormal(out.phrases.shape, 0, 1, 'float32', 7),
      ];
    });
    // f = Σ out·probe over every output, scaled to O(1)
    const f = () =>
      tf.tidy(() => {
        const out = m.forward(x);
        const ts = [...out.pixels.map((p) => p.tensor), out.maskFeatures, out.phrases];
        return tf.addN(ts.map((t, i) => tf.div(tf.sum(tf.mul(t, probes[i])), Math.sqrt(t.size)))) as tf.Scalar;
      });
    const t0 = Date.now();
    // ε = 2.5e-3: with 1e-2 the central difference's O(ε²) error reaches 3 % on some entries of this f
    // (e.g. a 1×1 conv weight whose difference goes −0.309, −0.314, −0.316, −0.322 for ε = 2e-2 … 2.5e-3, analytic −0.323)
    const results = await gradCheck(f, m.trainableVariables(), { entries: 16, eps: 2.5e-3, seed: 3, minGrad: 1e-2 });
    const worst = Math.max(...results.map((r) => r.relError));
    const median = results.map((r) => r.relError).sort((a, b) => a - b)[results.length >> 1];
    // eslint-disable-next-line no-console
    console.log(
      `MLMA gradcheck (${_l}): ${results.length} entries, max rel err ${worst.toExponential(2)}, median ${median.toExponential(2)}, ${Date.now() - t0} ms`,
    );
    expect(worst).toBeLessThan(1e-2);
    tf.dispose(probes);
    disposeInputs(x);
    m.dispose();
  });
});

describe('MultiLevelMutualAggregation save / fromPretrained', () => {
  beforeAll(() => setBackend('cpu'));

  it('round-trips bit-identically; a checkpoint of another config is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlma-'));
    const m = MultiLevelMutualAggregation.create(TINY, { seed: 4 });
    await m.save(dir);
    const loaded = await MultiLevelMutualAggregation.fromPretrained(dir);
    expect(loaded.config).toEqual(m.config);
    expect(loaded.trainableVariables().length).toBe(m.trainableVariables().length);
    const x = inputs(2, 3);
    const a = m.forward(x);
    const b = loaded.forward(x);
    expect(maxAbsDiff(await a.maskFeatures.data(), await b.maskFeatures.data())).toBe(0);
    expect(maxAbsDiff(await a.phrases.data(), await b.phrases.data())).toBe(0);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(await a.pixels[i].tensor.data(), await b.pixels[i].tensor.data())).toBe(0);
    tf.dispose([a as unknown as tf.TensorContainer, b as unknown as tf.TensorContainer]);
    disposeInputs(x);

    // weights saved with hidden_dim 16 under a config that says 32
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...m.config, hidden_dim: 32 }));
    const before = tf.memory().numTensors;
    await expect(MultiLevelMutualAggregation.fromPretrained(dir)).rejects.toThrow(
      /tensor 'levels\.0\.image_proj\.weight' has shape \[16,8,1,1\], expected \[32,8,1,1\]/,
    );
    // and one with the attention weights, loaded as "MLMA off": unexpected tensors are named
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...m.config, mutual: false }));
    await expect(MultiLevelMutualAggregation.fromPretrained(dir)).rejects.toThrow(/unexpected tensors 'levels\.0\.image_from_phrase/);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('MultiLevelMutualAggregation skip levels (finer mask features)', () => {
  beforeAll(() => setBackend('cpu'));

  /** TINY (finest stride 8, maps 8×8) with two skip levels at strides 4 and 2 (16×16, 32×32). */
  const SKIPPED: Partial<MlmaConfig> = { ...TINY, skip_channels: [6, 3] };
  const skipMaps = (b: number, seed = 30): FeatureMap[] => [
    { tensor: tf.randomNormal([b, 16, 16, 6], 0, 1, 'float32', seed) as tf.Tensor4D, stride: 4 },
    { tensor: tf.randomNormal([b, 32, 32, 3], 0, 1, 'float32', seed + 1) as tf.Tensor4D, stride: 2 },
  ];

  it('validates skip_channels and skip_strides before any weight is allocated', () => {
    const before = tf.memory().numTensors;
    expect(resolveMlmaConfig(SKIPPED).skip_strides).toEqual([]);
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, skip_channels: [6, 0] })).toThrow(
      'Error in MlmaConfig.skip_channels: expected [] or an array of positive integers (one per skip level, coarsest first), got [6,0]',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...SKIPPED, skip_strides: [4] })).toThrow(
      'Error in MlmaConfig.skip_strides: expected [] or one stride per skip level (2), got [4]',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...SKIPPED, skip_strides: [8, 4] })).toThrow(
      'Error in MlmaConfig.skip_strides: expected strictly decreasing positive integers below the finest image stride (8), got [8,4]',
    );
    expect(() => MultiLevelMutualAggregation.create({ ...TINY, skip_channels: [4, 4, 4, 4] })).toThrow(
      'Error in MlmaConfig.skip_channels: expected as many levels as halvings of the finest image stride (8) give integer strides, or skip_strides given, got [4,4,4,4]',
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('maskFeatures at the finest skip stride; pixels and phrases as without skips; no leak', async () => {
    const m = MultiLevelMutualAggregation.create(SKIPPED, { seed: 3 });
    const plain = MultiLevelMutualAggregation.create(TINY, { seed: 3 });
    expect(m.maskFeaturesShape()).toEqual({ channels: 8, stride: 2 });
    expect(m.outputShape()).toEqual(plain.outputShape());
    expect(
      m.parameters
        .keys()
        .filter((k) => k.startsWith('skip_levels.'))
        .sort(),
    ).toEqual(
      [0, 1].flatMap((i) => [
        `skip_levels.${i}.lateral_conv.weight`,
        `skip_levels.${i}.lateral_norm.bias`,
        `skip_levels.${i}.lateral_norm.weight`,
        `skip_levels.${i}.output_conv.weight`,
        `skip_levels.${i}.output_norm.bias`,
        `skip_levels.${i}.output_norm.weight`,
      ]),
    );
    expect(m.numParameters() - plain.numParameters()).toBe(6 * 16 + 2 * 16 + (3 * 16 + 2 * 16) + 2 * (9 * 16 * 16 + 2 * 16));
    const x = { ...inputs(2, 3), skips: skipMaps(2) };
    const out = m.forward(x);
    const ref = plain.forward({ ...x, skips: undefined }); // the same weights for everything but the skip levels (seeded per key)
    expect(out.maskFeatures.shape).toEqual([2, 32, 32, 8]);
    expect(maxAbsDiff(await out.phrases.data(), await ref.phrases.data())).toBe(0);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(await out.pixels[i].tensor.data(), await ref.pixels[i].tensor.data())).toBe(0);
    tf.dispose([out as unknown as tf.TensorContainer, ref as unknown as tf.TensorContainer]);
    await expectNoLeak(() => m.forward(x), 'MultiLevelMutualAggregation.forward(skips)');
    tf.dispose(x.skips.map((s) => s.tensor));
    disposeInputs(x);
    m.dispose();
    plain.dispose();
  });

  it('checks the skip inputs', () => {
    const m = MultiLevelMutualAggregation.create(SKIPPED);
    const x = inputs(1, 2);
    const skips = skipMaps(1);
    expect(() => m.forward(x)).toThrow('expected 2 skip levels (config skip_channels [6,3], coarsest first), got 0');
    expect(() => m.forward({ ...x, skips: [skips[1], skips[1]] })).toThrow('skips[0] must be NHWC [1, H, W, 6], got [1,32,32,3]');
    expect(() => m.forward({ ...x, skips: [skips[0], { ...skips[1], stride: 1 }] })).toThrow('skips[1] has stride 1, expected 2 (config skip_strides)');
    tf.dispose(skips.map((s) => s.tensor));
    disposeInputs(x);
    m.dispose();
  });

  it('gradients reach every skip-level weight and match finite differences', async () => {
    // one skip level (stride 4, 16×16) keeps the finite differences cheap on cpu
    const m = MultiLevelMutualAggregation.create({ ...TINY, skip_channels: [6], norm_groups: 2 }, { seed: 12 });
    const x = { ...inputs(1, 3, 22), skips: skipMaps(1, 40).slice(0, 1) };
    const probe = tf.randomNormal([1, 16, 16, 8], 0, 1, 'float32', 8);
    const f = () => tf.tidy(() => tf.div(tf.sum(tf.mul(m.forward(x).maskFeatures, probe)), 16) as tf.Scalar);
    const skipVars = m.parameters
      .keys()
      .filter((k) => k.startsWith('skip_levels.'))
      .map((k) => m.parameters.get(k) as tf.Variable);
    expect(skipVars.length).toBe(6);
    const { value, grads } = tf.variableGrads(f, skipVars);
    for (const v of skipVars) expect(tf.tidy(() => tf.max(tf.abs(grads[v.name])).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    // A 16×16×16 map of ReLUs puts kinks within ±ε of a weight (a norm's gain moves a whole
    // channel): entries whose one-sided differences disagree are flagged (`kink`) and left out;
    // of the rest half agree to < 1 % and all to < 10 % (measured: median 1e-4, worst 5 %).
    const results = await gradCheck(f, skipVars, { entries: 12, eps: 2.5e-3, seed: 5, minGrad: 1e-2 });
    const smooth = results
      .filter((r) => !r.kink)
      .map((r) => r.relError)
      .sort((a, b) => a - b);
    expect(smooth.length).toBeGreaterThanOrEqual(9);
    expect(smooth[smooth.length >> 1]).toBeLessThan(1e-2);
    expect(smooth[smooth.length - 1]).toBeLessThan(1e-1);
    tf.dispose([probe, ...x.skips.map((s) => s.tensor)]);
    disposeInputs(x);
    m.dispose();
  });

  it('round-trips through save / fromPretrained; weights of another skip config are named', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlma-skip-'));
    const m = MultiLevelMutualAggregation.create(SKIPPED, { seed: 4 });
    await m.save(dir);
    const loaded = await MultiLevelMutualAggregation.fromPretrained(dir);
    expect(loaded.config).toEqual(m.config);
    const x = { ...inputs(2, 3), skips: skipMaps(2) };
    const a = m.forward(x);
    const b = loaded.forward(x);
    expect(maxAbsDiff(await a.maskFeatures.data(), await b.maskFeatures.data())).toBe(0);
    tf.dispose([a as unknown as tf.TensorContainer, b as unknown as tf.TensorContainer, ...x.skips.map((s) => s.tensor)]);
    disposeInputs(x);
    const before = tf.memory().numTensors;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...m.config, skip_channels: [6, 5] }));
    await expect(MultiLevelMutualAggregation.fromPretrained(dir)).rejects.toThrow(
      /tensor 'skip_levels\.1\.lateral_conv\.weight' has shape \[16,3,1,1\], expected \[16,5,1,1\]/,
    );
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...m.config, skip_channels: [] }));
    await expect(MultiLevelMutualAggregation.fromPretrained(dir)).rejects.toThrow(/unexpected tensors 'skip_levels\.0\./);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
