import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type FeatureMap } from '@png/core';
import { expectClose, expectNoLeak, maxAbsDiff } from '@png/core/testing';
import { PngDecoder, type PngDecoderConfig } from './index';
import { gradCheck } from '@png/core/testing';

/** Tiny decoder over three levels (2×2, 4×4, 8×8) with 8×8 mask features. */
const TINY: Partial<PngDecoderConfig> = { hidden_dim: 16, num_layers: 3, num_heads: 2, dim_feedforward: 32, mask_dim: 8, in_channels: 16, max_phrases: 5 };
const SIZES = [2, 4, 8];

function inputs(b: number, p: number, seed = 0, inChannels = 16, realPerSample?: number[]) {
  const pixels: FeatureMap[] = SIZES.map((s, i) => ({
    tensor: tf.randomNormal([b, s, s, inChannels], 0, 1, 'float32', seed + i) as tf.Tensor4D,
    stride: 32 / 2 ** i,
  }));
  const maskFeatures = tf.randomNormal([b, 8, 8, 8], 0, 1, 'float32', seed + 5) as tf.Tensor4D;
  const phrases = tf.randomNormal([b, p, 16], 0, 1, 'float32', seed + 6) as tf.Tensor3D;
  const real = realPerSample ?? Array.from({ length: b }, (_, i) => p - (i % 2));
  const phraseMask = tf.tensor2d(
    real.flatMap((r) => Array.from({ length: p }, (_, j) => (j < r ? 1 : 0))),
    [b, p],
  );
  return { pixels, maskFeatures, phrases, phraseMask };
}
type Inputs = ReturnType<typeof inputs>;
const disposeInputs = (x: Inputs) => tf.dispose([...x.pixels.map((f) => f.tensor), x.maskFeatures, x.phrases, x.phraseMask]);

describe('PngDecoderConfig', () => {
  beforeAll(() => setBackend('cpu'));
  it('validates before any weight is allocated', () => {
    const before = tf.memory().numTensors;
    expect(() => PngDecoder.create({ ...TINY, num_layer: 2 } as Record<string, unknown>)).toThrow(
      "Error in PngDecoderConfig.num_layer: expected a known field (did you mean 'num_layers'?)",
    );
    expect(() => PngDecoder.create({ ...TINY, num_heads: 3 })).toThrow('Error in PngDecoderConfig.num_heads: expected a divisor of hidden_dim (16), got 3');
    expect(() => PngDecoder.create({ ...TINY, mask_positions: 'learned' } as never)).toThrow(
      `Error in PngDecoderConfig.mask_positions: expected 'none' or 'sine', got "learned"`,
    );
    expect(() => PngDecoder.create({ ...TINY, mask_dim: 7, mask_positions: 'sine' })).toThrow(
      "Error in PngDecoderConfig.mask_dim: expected an even number with mask_positions 'sine' (y and x halves), got 7",
    );
    expect(() => PngDecoder.create({ ...TINY, hidden_dim: 18, num_heads: 2 })).toThrow(
      'Error in PngDecoderConfig.hidden_dim: expected a positive multiple of 4',
    );
    expect(() => PngDecoder.create({ ...TINY, query_pos: 'learned' as 'none' })).toThrow(
      "Error in PngDecoderConfig.query_pos: expected 'linear' or 'none', got \"learned\"",
    );
    expect(() => PngDecoder.create({ ...TINY, pre_norm: 'yes' as unknown as boolean })).toThrow(
      'Error in PngDecoderConfig.pre_norm: expected a boolean, got "yes"',
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.each(['cpu', 'wasm'] as const)('PngDecoder on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it.each([
    ['post-norm', {}, 16],
    ['pre-norm, no query pos', { pre_norm: true, query_pos: 'none' as const }, 16],
    ['input_proj (in_channels 12), no masked attention', { in_channels: 12, mask_attention: false }, 12],
  ])('%s: shapes and no leak', async (_label, extra, inCh) => {
    const dec = PngDecoder.create({ ...TINY, ...extra }, { seed: 2 });
    const x = inputs(2, 3, 0, inCh);
    const out = dec.forward(x);
    expect(out.predictions.length).toBe(4);
    for (const p of out.predictions) expect(p.shape).toEqual([2, 8, 8, 3]);
    expect(out.phrases.shape).toEqual([2, 3, 16]);
    const values = await out.predictions[3].data();
    expect(values.every(Number.isFinite)).toBe(true);
    tf.dispose(out as unknown as tf.TensorContainer);
    await expectNoLeak(() => dec.forward(x), 'PngDecoder.forward');
    // extra (finer) pixel levels beyond num_feature_levels are ignored
    await expectNoLeak(() => dec.forward({ ...x, pixels: [...x.pixels, x.pixels[2]] }), 'PngDecoder.forward (4 levels)');
    expect(dec.parameters.keys().some((k) => k.startsWith('input_proj.'))).toBe(inCh !== 16);
    disposeInputs(x);
    dec.dispose();
  });

  it('rejects 0 phrases, too many phrases and mismatched inputs', () => {
    const dec = PngDecoder.create(TINY);
    const x = inputs(1, 2);
    expect(() => dec.forward({ ...x, phrases: tf.zeros([1, 0, 16]) as tf.Tensor3D, phraseMask: tf.zeros([1, 0]) as tf.Tensor2D })).toThrow(
      'PngDecoder.forward: 0 phrases; expected 1 to max_phrases (5) per narrative',
    );
    expect(() => dec.forward({ ...x, phrases: tf.zeros([1, 6, 16]) as tf.Tensor3D, phraseMask: tf.ones([1, 6]) as tf.Tensor2D })).toThrow(
      'PngDecoder.forward: 6 phrases; expected 1 to max_phrases (5)',
    );
    expect(() => dec.forward({ ...x, maskFeatures: tf.zeros([1, 8, 8, 4]) as tf.Tensor4D })).toThrow(
      'maskFeatures must be NHWC [1, H, W, 8] (mask_dim), got [1,8,8,4]',
    );
    expect(() => dec.forward({ ...x, pixels: x.pixels.slice(0, 2) })).toThrow('expected at least num_feature_levels (3) pixel levels, got 2');
    disposeInputs(x);
    dec.dispose();
  });

  it('a padding phrase with random features leaves every real prediction unchanged', async () => {
    const dec = PngDecoder.create(TINY, { seed: 9 });
    const x = inputs(2, 3, 4, 16, [3, 2]);
    const base = dec.forward(x);
    const padded = {
      ...x,
      phrases: tf.concat([x.phrases, tf.randomNormal([2, 1, 16], 0, 3, 'float32', 77)], 1) as tf.Tensor3D,
      phraseMask: tf.concat([x.phraseMask, tf.zeros([2, 1])], 1) as tf.Tensor2D,
    };
    const out = dec.forward(padded);
    for (let l = 0; l < base.predictions.length; l++) {
      const real = tf.slice(out.predictions[l], [0, 0, 0, 0], [2, 8, 8, 3]);
      // phrase 2 of sample 1 is padding in both runs: compare the real ones only
      const a = await real.data();
      const b = await base.predictions[l].data();
      let err = 0;
      for (let i = 0; i < a.length; i++) if (!(i >= 192 && i % 3 === 2)) err = Math.max(err, Math.abs(a[i] - b[i]));
      expect(err).toBeLessThanOrEqual(1e-5);
      real.dispose();
    }
    tf.dispose([base as unknown as tf.TensorContainer, out as unknown as tf.TensorContainer, padded.phrases, padded.phraseMask]);
    disposeInputs(x);
    dec.dispose();
  });

  it('mask positions: over pixels that look alike, a query gets one logit without them and a map that varies with them', async () => {
    const x = inputs(1, 2, 4);
    const alike = { ...x, maskFeatures: tf.tile(tf.randomNormal([1, 1, 1, 8], 0, 1, 'float32', 9), [1, 8, 8, 1]) as tf.Tensor4D }; // every pixel the same [1, 8, 8, 8]
    const spread = async (config: Partial<PngDecoderConfig>) => {
      const dec = PngDecoder.create({ ...TINY, ...config }, { seed: 3 });
      const out = dec.forward(alike);
      const first = out.predictions[0]; // [1, 8, 8, 2]
      const range = tf.sub(tf.max(first, [1, 2]), tf.min(first, [1, 2])); // [1, 2]
      const result = Math.max(...(await range.data()));
      tf.dispose([out as unknown as tf.TensorContainer, range]);
      dec.dispose();
      return result;
    };
    expect(await spread({})).toBe(0);
    expect(await spread({ mask_positions: 'sine' })).toBeGreaterThan(1e-2);
    tf.dispose(alike.maskFeatures);
    disposeInputs(x);
  });

  it("box head: DETR's bbox_embed (3 layers, shared) gives each prediction σ-normalised boxes; none without it", async () => {
    const x = inputs(2, 3, 7);
    const plain = PngDecoder.create(TINY, { seed: 2 });
    const withBoxes = PngDecoder.create({ ...TINY, box_head: true }, { seed: 2 });
    expect(plain.parameters.keys().some((k) => k.startsWith('bbox_embed'))).toBe(false);
    expect(
      withBoxes.parameters
        .keys()
        .filter((k) => k.startsWith('bbox_embed'))
        .sort(),
    ).toEqual([0, 1, 2].flatMap((j) => [`bbox_embed.layers.${j}.bias`, `bbox_embed.layers.${j}.weight`]));
    expect(withBoxes.parameters.get('bbox_embed.layers.2.weight').shape).toEqual([4, 16]);
    const a = plain.forward(x);
    const b = withBoxes.forward(x);
    expect(a.boxes).toBeUndefined();
    const boxes = b.boxes ?? [];
    expect(boxes.map((t) => t.shape)).toEqual(Array(4).fill([2, 3, 4])); // num_layers + 1
    for (const t of boxes) expect((await t.data()).every((v) => v > 0 && v < 1)).toBe(true);
    // the boxes are σ(bbox_embed(decoder_norm(query))) of the same queries the masks come from
    const expected = tf.tidy(() => tf.sigmoid(withBoxes.bbox_embed?.forward(b.phrases) as tf.Tensor));
    await expectClose(boxes[3], (await expected.data()) as Float32Array, 1e-6, 'final boxes');
    // the masks do not change with the head
    for (const [i, m] of a.predictions.entries()) expect(maxAbsDiff(await m.data(), await b.predictions[i].data())).toBe(0);
    tf.dispose([a as unknown as tf.TensorContainer, b as unknown as tf.TensorContainer, expected]);
    disposeInputs(x);
    plain.dispose();
    withBoxes.dispose();
  });

  it('masked attention changes the layers after the first prediction', async () => {
    const on = PngDecoder.create(TINY, { seed: 1 });
    const off = PngDecoder.create({ ...TINY, mask_attention: false }, { seed: 1 });
    const x = inputs(1, 3, 2);
    const a = on.forward(x);
    const b = off.forward(x);
    expect(maxAbsDiff(await a.predictions[0].data(), await b.predictions[0].data())).toBe(0);
    expect(maxAbsDiff(await a.predictions[3].data(), await b.predictions[3].data())).toBeGreaterThan(1e-4);
    tf.dispose([a as unknown as tf.TensorContainer, b as unknown as tf.TensorContainer]);
    disposeInputs(x);
    on.dispose();
    off.dispose();
  });
});

describe('PngDecoder gradients (cpu, float32 central differences)', () => {
  beforeAll(() => setBackend('cpu'));

  it.each([
    ['masked attention', {}],
    ['pre-norm, plain attention, input_proj', { pre_norm: true, mask_attention: false, in_channels: 12 }],
  ])('match finite differences (%s)', async (label, extra) => {
    const dec = PngDecoder.create({ ...TINY, num_layers: 2, ...extra }, { seed: 13 });
    const x = inputs(1, 3, 8, (extra as { in_channels?: number }).in_channels ?? 16);
    const probes = [0, 1, 2].map((i) => tf.randomNormal([1, 8, 8, 3], 0, 1, 'float32', 40 + i));
    const probe = tf.randomNormal([1, 3, 16], 0, 1, 'float32', 50);
    const f = () =>
      tf.tidy(() => {
        const out = dec.forward(x);
        let s: tf.Tensor = tf.div(tf.sum(tf.mul(out.phrases, probe)), Math.sqrt(probe.size));
        for (const [i, p] of out.predictions.entries()) s = tf.add(s, tf.div(tf.sum(tf.mul(p, probes[i])), Math.sqrt(p.size)));
        return s as tf.Scalar;
      });
    const t0 = Date.now();
    // f is only piecewise smooth (ReLUs in the FFNs and mask_embed, the masked-attention step):
    // eps = 1e-3 keeps kinks within ±eps rare, and gradCheck scores an entry with a kink by its
    // kink-free one-sided difference. float32 rounding of f is ~1e-7·|f|/eps ≈ 1e-4 for |g| ≥ 2e-2.
    const results = await gradCheck(f, dec.trainableVariables(), { entries: 20, eps: 1e-3, seed: 5, minGrad: 2e-2 });
    const errs = results.map((r) => r.relError).sort((a, b) => a - b);
    // eslint-disable-next-line no-console
    console.log(
      `PngDecoder gradcheck (${label}): ${results.length} entries, max rel err ${errs[errs.length - 1].toExponential(2)}, median ${errs[errs.length >> 1].toExponential(2)}, ${results.filter((r) => r.kink).length} at a kink, ${Date.now() - t0} ms`,
    );
    expect(results.filter((r) => r.kink).length).toBeLessThanOrEqual(3);
    expect(errs[errs.length - 1]).toBeLessThan(2e-2);
    expect(errs[errs.length >> 1]).toBeLessThan(2e-3);
    tf.dispose([...probes, probe]);
    disposeInputs(x);
    dec.dispose();
  });
});

describe('PngDecoder save / fromPretrained', () => {
  beforeAll(() => setBackend('cpu'));

  it('round-trips bit-identically; a checkpoint of another config is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-decoder-'));
    const dec = PngDecoder.create(TINY, { seed: 4 });
    await dec.save(dir);
    const loaded = await PngDecoder.fromPretrained(dir);
    expect(loaded.config).toEqual(dec.config);
    const x = inputs(2, 3);
    const a = dec.forward(x);
    const b = loaded.forward(x);
    for (let l = 0; l < a.predictions.length; l++) await expectClose(b.predictions[l], await a.predictions[l].data(), 0, `prediction ${l}`);
    await expectClose(b.phrases, await a.phrases.data(), 0);
    tf.dispose([a as unknown as tf.TensorContainer, b as unknown as tf.TensorContainer]);
    disposeInputs(x);

    const before = tf.memory().numTensors;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...dec.config, dim_feedforward: 64 }));
    await expect(PngDecoder.fromPretrained(dir)).rejects.toThrow(/tensor 'transformer_ffn_layers\.0\.linear1\.weight' has shape \[32,16\], expected \[64,16\]/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...dec.config, num_layers: 2 }));
    await expect(PngDecoder.fromPretrained(dir)).rejects.toThrow(/unexpected tensors 'transformer_cross_attention_layers\.2\./);
    expect(tf.memory().numTensors).toBe(before);
    dec.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
