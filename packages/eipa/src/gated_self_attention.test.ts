import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, attentionWithProbs, keyMaskBias, mergeHeads, setBackend, splitHeads } from '@png/core';
import { expectClose, expectDefined, gradCheck } from '@png/core/testing';
import { GatedSelfAttention } from './gated_self_attention';
import { PhraseExtractor } from './phrase_extractor';

beforeAll(async () => {
  await setBackend('wasm');
});

/** Random parameters (the default zero/one inits would hide a wrong wiring). */
function randomize(params: { keys(): string[]; get(key: string): tf.Tensor }, seed: number): void {
  for (const [i, key] of params.keys().entries()) (params.get(key) as tf.Variable).assign(tf.randomNormal(params.get(key).shape, 0, 0.5, 'float32', seed + i));
}

function build<T>(make: (scope: WeightScope) => T, seed = 1): { module: T; params: ReturnType<WeightScope['finish']> } {
  const built = WeightScope.fresh({ seed, trainable: true }).build(make);
  randomize(built.params, seed * 100);
  return built;
}

const tokens = () => tf.randomNormal([2, 5, 8], 0, 1, 'float32', 1) as tf.Tensor3D; // [B, N, C]
const phrases = () => tf.randomNormal([2, 3, 6], 0, 1, 'float32', 2) as tf.Tensor3D; // [B, P, D]
const phraseMask = () =>
  tf.tensor2d([
    [1, 1, 1],
    [1, 0, 0],
  ]);

describe('GatedSelfAttention (GLIGEN)', () => {
  it("equals GLIGEN's form: self-attention over LN([x; linear(phrases)]) for every token, the phrase tokens' outputs dropped", async () => {
    const { module: sa, params } = build((s) => new GatedSelfAttention(s, 8, 4, 2, { kind: 'per_channel', init: 0.3 }, 1e-5, 6));
    const [x, p, mask] = [tokens(), phrases(), phraseMask()];
    const { out, attention } = sa.forward(x, p, mask);
    const expected = tf.tidy(() => {
      const all = sa.norm.forward(tf.concat([x, expectDefined(sa.linear, 'sa.linear').forward(p)], 1)); // [B, N + P, C]
      const heads = (l: { forward(t: tf.Tensor): tf.Tensor }) => splitHeads(l.forward(all), 2);
      const keys = tf.concat([tf.ones([2, 5]), mask], 1); // [B, N + P]
      const { out: o } = attentionWithProbs(heads(sa.to_q), heads(sa.to_k), heads(sa.to_v), { bias: keyMaskBias(keys) });
      const update = tf.slice(sa.to_out.forward(mergeHeads(o)), [0, 0, 0], [-1, 5, -1]); // the image tokens' rows
      return tf.add(x, tf.mul(tf.tanh(expectDefined(sa.gate, 'sa.gate')), update));
    });
    await expectClose(out, await expected.data(), 1e-5, 'GLIGEN gated self-attention');
    expect(sa.gate?.shape).toEqual([8]);
    expect(attention.shape).toEqual([2, 5, 3]);
    expect(Math.max(...(await tf.slice(attention, [1, 0, 1], [1, -1, 2]).data()))).toBe(0); // padded phrases get no attention
    tf.dispose([x, p, mask, out, attention, expected]);
    params.dispose();
  });

  it('is the identity with its gate at 0, and rejects a context it was not built for', () => {
    const zero = build((s) => new GatedSelfAttention(s, 8, 4, 2, { kind: 'scalar', init: 0 }, 1e-5, 6));
    // the build randomised the gate too: close it again
    (zero.module.gate as tf.Variable).assign(tf.zeros([1]));
    const [x, p] = [tokens(), phrases()];
    const { out, attention } = zero.module.forward(x, p);
    expect(Buffer.from(out.dataSync().buffer).equals(Buffer.from(x.dataSync().buffer))).toBe(true);
    const plain = build((s) => new GatedSelfAttention(s, 8, 4, 2, { kind: 'none', init: 0 }, 1e-5));
    expect(plain.params.keys().some((k) => k.includes('gate') || k.startsWith('linear'))).toBe(false);
    expect(() => plain.module.attend(x, { context: p })).toThrow('GatedSelfAttention: built without a context width; it attends over its tokens only');
    tf.dispose([x, p, out, attention]);
    zero.params.dispose();
    plain.params.dispose();
  });

  it('passes a finite-difference gradient check (every parameter, the projection of the phrases included)', async () => {
    const { module: sa, params } = build((s) => new GatedSelfAttention(s, 8, 4, 2, { kind: 'per_channel', init: 0.3 }, 1e-5, 6), 3);
    const [x, p, mask] = [tokens(), phrases(), phraseMask()];
    const w = tf.randomNormal([2, 5, 8], 0, 1, 'float32', 9);
    const vars = params.keys().map((k) => params.get(k) as tf.Variable);
    const { grads, value } = tf.variableGrads(() => tf.sum(tf.mul(sa.forward(x, p, mask).out, w)) as tf.Scalar, vars);
    for (const v of vars) expect(Math.max(...(await tf.abs(grads[v.name]).data()))).toBeGreaterThan(0);
    tf.dispose([grads, value]);
    const checked = await gradCheck(() => tf.sum(tf.mul(sa.forward(x, p, mask).out, w)) as tf.Scalar, vars, { entries: 16, eps: 1e-2, seed: 4 });
    for (const e of checked) expect(e.relError).toBeLessThan(3e-2);
    tf.dispose([x, p, mask, w]);
    params.dispose();
  });
});

describe('PhraseExtractor', () => {
  const options = { bottleneck: 4, heads: 2, selfAttention: true, ffnDim: 12, eps: 1e-5 };

  it('names its weights: the cross-attention at the root, self_attn.*, ffn_norm.*, ffn.fc1/fc2.*; one gate', () => {
    const { params } = build((s) => new PhraseExtractor(s.pp('extract'), 6, 8, { ...options, gate: { kind: 'scalar', init: 0 } }));
    const keys = params.keys();
    expect(keys.filter((k) => k.endsWith('gate'))).toEqual(['extract.gate']);
    for (const k of [
      'extract.to_q.weight',
      'extract.norm_m.bias',
      'extract.self_attn.to_k.weight',
      'extract.self_attn.norm.weight',
      'extract.ffn_norm.weight',
      'extract.ffn.fc1.weight',
      'extract.ffn.fc2.bias',
    ])
      expect(keys).toContain(k);
    expect(params.get('extract.ffn.fc1.weight').shape).toEqual([12, 6]);
    params.dispose();
  });

  it('with its gate at 0 leaves the phrases exactly; ungated it changes them', () => {
    const gated = build((s) => new PhraseExtractor(s, 6, 8, { ...options, gate: { kind: 'scalar', init: 0 } }));
    (gated.module.gate as tf.Variable).assign(tf.zeros([1]));
    const [p, x, mask] = [phrases(), tokens(), phraseMask()];
    const same = gated.module.forward(p, x, mask);
    expect(Buffer.from(same.dataSync().buffer).equals(Buffer.from(p.dataSync().buffer))).toBe(true);
    const ungated = build((s) => new PhraseExtractor(s, 6, 8, { ...options, gate: { kind: 'none', init: 0 } }));
    expect(ungated.module.gate).toBeUndefined();
    const moved = ungated.module.forward(p, x, mask);
    expect(tf.max(tf.abs(tf.sub(moved, p))).dataSync()[0]).toBeGreaterThan(1e-2);
    tf.dispose([p, x, mask, same, moved]);
    gated.params.dispose();
    ungated.params.dispose();
  });

  it("a padded phrase slot does not reach the real phrases' state through the self-attention", async () => {
    const { module: extractor, params } = build((s) => new PhraseExtractor(s, 6, 8, { ...options, gate: { kind: 'none', init: 0 } }), 5);
    const [p, x, mask] = [phrases(), tokens(), phraseMask()];
    const altered = tf.concat(
      [tf.slice(p, [0, 0, 0], [1, -1, -1]), tf.concat([tf.slice(p, [1, 0, 0], [1, 1, -1]), tf.fill([1, 2, 6], 7)], 1)],
      0,
    ) as tf.Tensor3D; // the second narrative's padding changed
    const a = extractor.forward(p, x, mask);
    const b = extractor.forward(altered, x, mask);
    await expectClose(tf.slice(b, [1, 0, 0], [1, 1, -1]), await tf.slice(a, [1, 0, 0], [1, 1, -1]).data(), 1e-6, 'the real phrase of narrative 2');
    const noSelf = build((s) => new PhraseExtractor(s, 6, 8, { ...options, selfAttention: false, gate: { kind: 'none', init: 0 } }), 5);
    // with the self-attention the phrases of a narrative see each other: changing one real phrase moves the others
    const other = tf.concat([tf.fill([1, 1, 6], -3), tf.slice(p, [0, 1, 0], [1, -1, -1])], 1);
    const changed = tf.concat([other, tf.slice(p, [1, 0, 0], [1, -1, -1])], 0) as tf.Tensor3D;
    const moved = (m: PhraseExtractor) =>
      tf
        .max(tf.abs(tf.sub(tf.slice(m.forward(changed, x, mask), [0, 1, 0], [1, 2, -1]), tf.slice(m.forward(p, x, mask), [0, 1, 0], [1, 2, -1]))))
        .dataSync()[0];
    expect(moved(extractor)).toBeGreaterThan(1e-3);
    expect(moved(noSelf.module)).toBe(0);
    tf.dispose([p, x, mask, altered, a, b, other, changed]);
    params.dispose();
    noSelf.params.dispose();
  });

  it('passes a finite-difference gradient check through the shared per-channel gate', async () => {
    const { module: extractor, params } = build((s) => new PhraseExtractor(s, 6, 8, { ...options, gate: { kind: 'per_channel', init: 0.4 } }), 6);
    expect(extractor.gate?.shape).toEqual([6]);
    const [p, x, mask] = [phrases(), tokens(), phraseMask()];
    const w = tf.randomNormal([2, 3, 6], 0, 1, 'float32', 10);
    const vars = params.keys().map((k) => params.get(k) as tf.Variable);
    const f = () => tf.sum(tf.mul(extractor.forward(p, x, mask), w)) as tf.Scalar;
    const { grads, value } = tf.variableGrads(f, vars);
    for (const v of vars) expect(Math.max(...(await tf.abs(grads[v.name]).data()))).toBeGreaterThan(0);
    tf.dispose([grads, value]);
    for (const e of await gradCheck(f, vars, { entries: 16, eps: 1e-2, seed: 7 })) expect(e.relError).toBeLessThan(3e-2);
    tf.dispose([p, x, mask, w]);
    params.dispose();
  });
});
