import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type BackendName } from '@png/core';
import { expectNoLeak, maxAbsDiff } from '@png/core/testing';
import { AdamW } from './adamw';

/** torch.optim.AdamW's update in float64, one parameter array at a time (the reference). */
function referenceTrajectory(
  p0: Record<string, number[]>,
  grads: (key: string, t: number) => number[],
  lrs: number[],
  {
    b1,
    b2,
    eps,
    wd,
    noDecay,
    lrMultiplier = () => 1,
  }: { b1: number; b2: number; eps: number; wd: number; noDecay: (k: string) => boolean; lrMultiplier?: (k: string) => number },
): Record<string, number[]> {
  const p = Object.fromEntries(Object.entries(p0).map(([k, v]) => [k, [...v]]));
  const m = Object.fromEntries(Object.entries(p0).map(([k, v]) => [k, v.map(() => 0)]));
  const v = Object.fromEntries(Object.entries(p0).map(([k, x]) => [k, x.map(() => 0)]));
  lrs.forEach((groupLr, i) => {
    const t = i + 1;
    for (const key of Object.keys(p)) {
      const lr = groupLr * lrMultiplier(key); // the key's param group
      const g = grads(key, t);
      for (let j = 0; j < g.length; j++) {
        if (!noDecay(key)) p[key][j] -= lr * wd * p[key][j];
        m[key][j] = b1 * m[key][j] + (1 - b1) * g[j];
        v[key][j] = b2 * v[key][j] + (1 - b2) * g[j] * g[j];
        const mHat = m[key][j] / (1 - b1 ** t);
        const vHat = v[key][j] / (1 - b2 ** t);
        p[key][j] -= (lr * mHat) / (Math.sqrt(vHat) + eps);
      }
    }
  });
  return p;
}

/**
 * Deterministic gradients of mixed signs and magnitudes (1e-3 … 3), independent of the parameters,
 * rounded to float32 so the reference sees exactly what the optimizer gets.
 */
function gradient(key: string, t: number, n: number): number[] {
  const phase = key === 'w' ? 0.3 : 1.7;
  return Array.from({ length: n }, (_, j) => Math.fround(Math.sin(0.9 * j + 1.3 * t + phase) * 10 ** ((j % 4) - 2.5)));
}

describe.each<BackendName>(['cpu', 'wasm'])('AdamW (%s)', (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  it('matches a float64 torch.optim.AdamW trajectory within 1e-6 (weight decay, noDecay, a varying lr)', async () => {
    const p0 = {
      w: Array.from({ length: 12 }, (_, j) => Math.fround(Math.cos(j) * 1.5)),
      'norm.bias': Array.from({ length: 5 }, (_, j) => Math.fround(j / 5 - 0.4)),
    };
    const variables = { w: tf.variable(tf.tensor2d(p0.w, [3, 4])), 'norm.bias': tf.variable(tf.tensor1d(p0['norm.bias'])) };
    const config = { b1: 0.8, b2: 0.99, eps: 1e-8, wd: 0.05, noDecay: (k: string) => k.endsWith('.bias') };
    const opt = new AdamW(variables, { betas: [config.b1, config.b2], eps: config.eps, weight_decay: config.wd, noDecay: config.noDecay });
    const lrs = Array.from({ length: 25 }, (_, i) => 1e-2 * (1 - i / 30));
    lrs.forEach((lr, i) => {
      const grads = tf.tidy(() => ({ w: tf.tensor2d(gradient('w', i + 1, 12), [3, 4]), 'norm.bias': tf.tensor1d(gradient('norm.bias', i + 1, 5)) }));
      opt.applyGradients(grads, lr);
      tf.dispose(grads);
    });
    const expected = referenceTrajectory(p0, (k, t) => gradient(k, t, p0[k as keyof typeof p0].length), lrs, config);
    const devW = maxAbsDiff(await variables.w.data(), expected.w);
    const devB = maxAbsDiff(await variables['norm.bias'].data(), expected['norm.bias']);
    expect(Math.max(devW, devB)).toBeLessThan(1e-6);
    expect(opt.iterations).toBe(25);
    expect(opt.decays('w')).toBe(true);
    expect(opt.decays('norm.bias')).toBe(false);
    opt.dispose();
    tf.dispose(Object.values(variables));
  });

  it('scales the lr of the keys lrMultiplier names (step and decay, as a torch param group) and leaves the others bit for bit', async () => {
    const p0 = { w: Array.from({ length: 12 }, (_, j) => Math.fround(Math.cos(j) * 1.5)), 'inject.gate': [Math.fround(0.01)] };
    const make = () => ({ w: tf.variable(tf.tensor2d(p0.w, [3, 4])), 'inject.gate': tf.variable(tf.tensor1d(p0['inject.gate'])) });
    const config = { b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.05, noDecay: () => false, lrMultiplier: (k: string) => (k.endsWith('gate') ? 10 : 1) };
    const [scaled, plain] = [make(), make()];
    const optimizers = [
      new AdamW(scaled, { betas: [config.b1, config.b2], weight_decay: config.wd, lrMultiplier: config.lrMultiplier }),
      new AdamW(plain, { betas: [config.b1, config.b2], weight_decay: config.wd }),
    ];
    expect([optimizers[0].lrMultiplier('inject.gate'), optimizers[0].lrMultiplier('w')]).toEqual([10, 1]);
    const lrs = Array.from({ length: 10 }, (_, i) => 1e-3 * (1 - i / 20));
    lrs.forEach((lr, i) => {
      const grads = tf.tidy(() => ({ w: tf.tensor2d(gradient('w', i + 1, 12), [3, 4]), 'inject.gate': tf.tensor1d(gradient('inject.gate', i + 1, 1)) }));
      for (const opt of optimizers) opt.applyGradients(grads, lr);
      tf.dispose(grads);
    });
    const expected = referenceTrajectory(p0, (k, t) => gradient(k, t, p0[k as keyof typeof p0].length), lrs, config);
    expect(maxAbsDiff(await scaled['inject.gate'].data(), expected['inject.gate'])).toBeLessThan(1e-6);
    expect(Math.abs((await scaled['inject.gate'].data())[0] - (await plain['inject.gate'].data())[0])).toBeGreaterThan(5e-3); // ten times the plain one's ~1e-3 travel
    expect(Buffer.from((await scaled.w.data()).buffer).equals(Buffer.from((await plain.w.data()).buffer))).toBe(true);
    for (const opt of optimizers) opt.dispose();
    tf.dispose([...Object.values(scaled), ...Object.values(plain)]);
  });

  it('takes the hand-computed first step: p·(1 − lr·wd) − lr·g/(|g| + ε)', async () => {
    const p = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW({ p }, { lr: 0.1, weight_decay: 0.01 });
    const g = tf.tensor1d([0.5, -3]);
    opt.applyGradients({ p: g });
    // 1·0.999 − 0.1·0.5/(0.5 + 1e-8) = 0.8990000002;  −2·0.999 + 0.1·3/(3 + 1e-8) = −1.8980000000
    const got = await p.data();
    expect(got[0]).toBeCloseTo(0.8990000002, 6);
    expect(got[1]).toBeCloseTo(-1.898, 6);
    tf.dispose([p, g]);
    opt.dispose();
  });
});

describe('AdamW state and contracts (wasm)', () => {
  beforeAll(async () => {
    await setBackend('wasm');
  });

  const makeVars = () => ({ a: tf.variable(tf.tensor2d([1, 2, 3, 4], [2, 2])), b: tf.variable(tf.tensor1d([0.5, -0.5])) });
  const grads = (t: number) => ({ a: tf.fill([2, 2], Math.sin(t)), b: tf.fill([2], Math.cos(t)) });

  it('exports and imports its state: a restored optimizer continues bit for bit', async () => {
    const v1 = makeVars();
    const o1 = new AdamW(v1, { lr: 0.05 });
    for (let t = 1; t <= 3; t++) {
      const g = grads(t);
      o1.applyGradients(g);
      tf.dispose(g);
    }
    const v2 = makeVars();
    const o2 = new AdamW(v2, { lr: 0.05 });
    o2.loadState(o1.state());
    for (const k of ['a', 'b'] as const) (v2[k] as tf.Variable).assign(v1[k]);
    expect(o2.iterations).toBe(3);
    const g = grads(4);
    o1.applyGradients(g);
    o2.applyGradients(g);
    tf.dispose(g);
    for (const k of ['a', 'b'] as const) expect(Buffer.from((await v2[k].data()).buffer).equals(Buffer.from((await v1[k].data()).buffer))).toBe(true);
    o1.dispose();
    o2.dispose();
    tf.dispose([...Object.values(v1), ...Object.values(v2)]);
  });

  it('applies an update without leaking tensors', async () => {
    const v = makeVars();
    const opt = new AdamW(v);
    const g = grads(1);
    await expectNoLeak(() => opt.applyGradients(g), 'AdamW.applyGradients');
    tf.dispose([g, ...Object.values(v)]);
    opt.dispose();
  });

  it('rejects gradients that do not match the variables, naming the key', () => {
    const v = makeVars();
    const opt = new AdamW(v);
    const bad = { a: tf.zeros([2, 2]), c: tf.zeros([2]) };
    expect(() => opt.applyGradients(bad)).toThrow(/missing 'b'.*unexpected 'c'/);
    const misshaped = { a: tf.zeros([4]), b: tf.zeros([2]) };
    expect(() => opt.applyGradients(misshaped)).toThrow("'a' has shape [4], expected [2,2]");
    expect(opt.iterations).toBe(0);
    tf.dispose([bad, misshaped, ...Object.values(v)]);
    opt.dispose();
  });

  it('validates its config and its variables', () => {
    const v = makeVars();
    expect(() => new AdamW(v, { betas: [0.9, 1] })).toThrow('Error in AdamWConfig.betas: expected two numbers in [0, 1)');
    expect(() => new AdamW(v, { weight_decay: -1 })).toThrow('Error in AdamWConfig.weight_decay');
    expect(() => new AdamW({ ...v, again: v.a })).toThrow("'a' and 'again' are the same variable");
    expect(() => new AdamW(v, { lrMultiplier: (k) => (k === 'b' ? -1 : 1) })).toThrow("AdamW: the lr multiplier of 'b' is -1; it must be a finite number ≥ 0");
    const frozen = tf.variable(tf.zeros([1]), false);
    expect(() => new AdamW({ frozen })).toThrow("'frozen' is a non-trainable variable");
    tf.dispose([frozen, ...Object.values(v)]);
  });
});
