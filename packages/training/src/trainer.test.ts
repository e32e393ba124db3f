import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Linear, WeightScope, setBackend, type BackendName, type Parameters } from '@png/core';
import { warmupPoly } from './lr_schedule';
import { Trainer, TrainingDivergedError, trainableVariables, type TrainerOptions } from './trainer';

type Batch = {
  readonly x: tf.Tensor2D; // [N, 4]
  readonly y: tf.Tensor2D; // [N, 3]
};

/** A 2-layer MLP 4 → 16 → 3 with fresh trainable weights. */
function mlp(seed: number): { params: Parameters; variables: Record<string, tf.Variable>; mse: (b: Batch) => tf.Scalar } {
  const { module, params } = WeightScope.fresh({ seed, trainable: true }).build((s) => ({
    fc1: new Linear(s.pp('fc1'), 4, 16),
    fc2: new Linear(s.pp('fc2'), 16, 3),
  }));
  const mse = (b: Batch) => tf.mean(tf.squaredDifference(module.fc2.forward(tf.tanh(module.fc1.forward(b.x))), b.y)) as tf.Scalar;
  return { params, variables: trainableVariables(params), mse };
}

/** A fixed batch of `n` samples (seeded). */
function batch(n: number, seed: number): Batch {
  return { x: tf.randomNormal([n, 4], 0, 1, 'float32', seed) as tf.Tensor2D, y: tf.randomNormal([n, 3], 0, 1, 'float32', seed + 1) as tf.Tensor2D };
}

async function snapshot(variables: Record<string, tf.Variable>): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const key of Object.keys(variables).sort()) out[key] = Buffer.from(((await variables[key].data()) as Float32Array).buffer.slice(0));
  return out;
}

function bitEqual(a: Record<string, Buffer>, b: Record<string, Buffer>): boolean {
  return Object.keys(a).length === Object.keys(b).length && Object.keys(a).every((k) => b[k] !== undefined && a[k].equals(b[k]));
}

describe.each<[BackendName, number]>([
  ['cpu', 3e-2],
  ['wasm', 3e-2],
])('Trainer overfits a fixed batch (%s)', (backend, lr) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  it('loses ≥ 90% of its loss within 200 steps', async () => {
    const model = mlp(7);
    const data = batch(16, 3);
    const trainer = new Trainer({
      variables: model.variables,
      lossFn: model.mse,
      schedule: warmupPoly({ base_lr: lr, warmup_steps: 10, total_steps: 200 }),
      clip_grad_norm: 1,
    });
    const first = (await trainer.step(data)).loss;
    let last = first;
    let steps = 1;
    while (steps < 200 && last > 0.1 * first) {
      last = (await trainer.step(data)).loss;
      steps++;
    }
    expect(last).toBeLessThanOrEqual(0.1 * first);
    expect(trainer.iterations).toBe(steps);
    trainer.dispose();
    model.params.dispose();
    tf.dispose(data);
  });
});

describe('Trainer (wasm)', () => {
  beforeAll(async () => {
    await setBackend('wasm');
  });

  /** w·c for a constant c: the gradient is c, whatever w. */
  function linear(c: number[]): { w: tf.Variable; options: TrainerOptions<void> } {
    const w = tf.variable(tf.zeros([c.length]));
    // β1 = 0 makes the first moment the applied gradient itself, so the test can read it back.
    return { w, options: { variables: { w }, lossFn: () => tf.sum(tf.mul(w, tf.tensor1d(c))), optimizer: { lr: 0.1, betas: [0, 0.999] } } };
  }

  it.each([
    ['above the clip: scaled to norm = clip', 1, [0.6, 0.8, 0]],
    ['below the clip: untouched', 10, [3, 4, 0]],
  ])('clips the global gradient norm %s', async (_name, clip, applied) => {
    const { w, options } = linear([3, 4, 0]);
    const trainer = new Trainer({ ...options, clip_grad_norm: clip });
    const result = await trainer.step();
    expect(result.gradNorm).toBeCloseTo(5, 5);
    const m = await trainer.optimizer.state().m.w.data();
    if (clip > 5) expect(Array.from(m)).toEqual(applied);
    else for (const [i, g] of applied.entries()) expect(m[i]).toBeCloseTo(g, 6);
    expect(Math.hypot(...m)).toBeCloseTo(Math.min(clip, 5), 5);
    trainer.dispose();
    w.dispose();
  });

  it('accumulates: 2 micro-steps on half batches update like 1 step on the full batch', async () => {
    const full = batch(8, 11);
    const halves = [0, 4].map((at) => ({ x: tf.slice(full.x, [at, 0], [4, 4]), y: tf.slice(full.y, [at, 0], [4, 3]) }));
    const a = mlp(5);
    const b = mlp(5);
    const options = { optimizer: { lr: 1e-2 }, clip_grad_norm: 0.5 };
    const once = new Trainer({ variables: a.variables, lossFn: a.mse, ...options });
    const twice = new Trainer({ variables: b.variables, lossFn: b.mse, accumulation_steps: 2, ...options });
    for (let update = 0; update < 3; update++) {
      const r = await once.step(full);
      const r1 = await twice.step(halves[0]);
      const r2 = await twice.step(halves[1]);
      expect([r.applied, r1.applied, r2.applied]).toEqual([true, false, true]);
      expect(r2.gradNorm).toBeCloseTo(r.gradNorm, 5);
    }
    for (const key of Object.keys(a.variables)) {
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a.variables[key], b.variables[key]))));
      expect((await diff.data())[0]).toBeLessThan(1e-6);
      diff.dispose();
    }
    once.dispose();
    twice.dispose();
    a.params.dispose();
    b.params.dispose();
    tf.dispose([full, halves]);
  });

  it('leaks no tensor over 50 steps (accumulation and clipping on)', async () => {
    const model = mlp(1);
    const data = batch(8, 1);
    const trainer = new Trainer({ variables: model.variables, lossFn: model.mse, accumulation_steps: 2, clip_grad_norm: 0.1 });
    for (let i = 0; i < 4; i++) await trainer.step(data); // warm-up: kernels, scalars
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) await trainer.step(data);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    model.params.dispose();
    tf.dispose(data);
  });

  it('resumes from Trainer.save bit for bit: the losses after resuming are identical', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-trainer-'));
    const batches = [0, 1, 2, 3].map((i) => batch(6, 20 + i));
    const schedule = warmupPoly({ base_lr: 1e-2, warmup_steps: 3, total_steps: 20 });
    const options = { schedule, clip_grad_norm: 1, optimizer: { noDecay: (k: string) => k.endsWith('.bias') } };
    const run = mlp(1);
    const trainer = new Trainer({ variables: run.variables, lossFn: run.mse, ...options });
    for (let s = 0; s < 4; s++) await trainer.step(batches[s % 4]);
    await trainer.save(path.join(dir, 'ckpt'), { cursor: 4, seed: 1 });
    const continued: number[] = [];
    for (let s = 4; s < 7; s++) continued.push((await trainer.step(batches[s % 4])).loss);

    const fresh = mlp(2);
    const resumed = new Trainer({ variables: fresh.variables, lossFn: fresh.mse, ...options });
    const extra = await resumed.resume(path.join(dir, 'ckpt'));
    expect(extra).toEqual({ cursor: 4, seed: 1 });
    expect(resumed.iterations).toBe(4);
    const losses: number[] = [];
    for (let s = extra.cursor as number; s < 7; s++) losses.push((await resumed.step(batches[s % 4])).loss);
    for (const [i, l] of losses.entries()) expect(Object.is(l, continued[i])).toBe(true);
    expect(bitEqual(await snapshot(fresh.variables), await snapshot(run.variables))).toBe(true);
    for (const t of [trainer, resumed]) t.dispose();
    for (const m of [run, fresh]) m.params.dispose();
    tf.dispose(batches);
    fs.rmSync(dir, { recursive: true });
  });

  it('a NaN loss at step 3 throws TrainingDivergedError, changes nothing, and the step-2 checkpoint stays loadable', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-trainer-'));
    const model = mlp(3);
    const data = batch(6, 5);
    let calls = 0;
    const lossFn = (b: Batch) => (++calls === 3 ? tf.mul(model.mse(b), NaN) : model.mse(b)) as tf.Scalar;
    const trainer = new Trainer({ variables: model.variables, lossFn, optimizer: { lr: 1e-2 } });
    await trainer.step(data);
    await trainer.step(data);
    await trainer.save(path.join(dir, 'ckpt'));
    const afterStep2 = await snapshot(model.variables);
    const moments = await snapshot({ ...trainer.optimizer.state().m } as Record<string, tf.Variable>);
    const before = tf.memory().numTensors;
    const error = await trainer.step(data).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingDivergedError);
    expect((error as TrainingDivergedError).step).toBe(3);
    expect((error as Error).message).toMatch(/^training diverged at step 3: the loss is NaN\. No update was applied/);
    expect(tf.memory().numTensors).toBe(before);
    expect(trainer.iterations).toBe(2);
    expect(bitEqual(await snapshot(model.variables), afterStep2)).toBe(true);
    expect(bitEqual(await snapshot({ ...trainer.optimizer.state().m } as Record<string, tf.Variable>), moments)).toBe(true);

    const other = mlp(4);
    const restored = new Trainer({ variables: other.variables, lossFn: other.mse });
    await restored.resume(path.join(dir, 'ckpt'));
    expect(bitEqual(await snapshot(other.variables), afterStep2)).toBe(true);
    expect((await trainer.step(data)).applied).toBe(true); // the trainer goes on after the bad batch
    for (const t of [trainer, restored]) t.dispose();
    for (const m of [model, other]) m.params.dispose();
    tf.dispose(data);
    fs.rmSync(dir, { recursive: true });
  });

  it('an infinite gradient norm diverges too, and discards the half-accumulated update', async () => {
    const w = tf.variable(tf.zeros([2]));
    let poison = false;
    // sqrt at 0: a finite loss (0) with an infinite gradient.
    const lossFn = () => (poison ? tf.sum(tf.sqrt(w)) : tf.sum(tf.mul(w, tf.tensor1d([1, 2])))) as tf.Scalar;
    const trainer = new Trainer({ variables: { w }, lossFn, accumulation_steps: 2, optimizer: { lr: 0.1 } });
    await trainer.step(undefined);
    poison = true;
    await expect(trainer.step(undefined)).rejects.toThrow('training diverged at step 1 (micro-step 2 of 2): the gradient norm is Infinity');
    poison = false;
    const r = [await trainer.step(undefined), await trainer.step(undefined)];
    expect(r.map((x) => x.applied)).toEqual([false, true]);
    expect(r[1].gradNorm).toBeCloseTo(Math.hypot(1, 2), 5); // a clean accumulation, the bad micro-step forgotten
    trainer.dispose();
    w.dispose();
  });

  it('reports unusable setups clearly', async () => {
    const used = tf.variable(tf.ones([2]));
    const unused = tf.variable(tf.ones([2]));
    const trainer = new Trainer({ variables: { used, unused }, lossFn: () => tf.sum(used) as tf.Scalar, accumulation_steps: 2 });
    await expect(trainer.step(undefined)).rejects.toThrow("variable 'unused' received no gradient");
    const ok = new Trainer({ variables: { used }, lossFn: () => tf.sum(used) as tf.Scalar, accumulation_steps: 2 });
    await ok.step(undefined);
    await expect(ok.save(path.join(os.tmpdir(), 'never-written'))).rejects.toThrow('1 of 2 micro-steps of step 1 are accumulated');
    expect(() => new Trainer({ variables: { used }, lossFn: () => tf.sum(used) as tf.Scalar, accumulation_steps: 0 })).toThrow(
      'Error in TrainerConfig.accumulation_steps',
    );
    expect(() => new Trainer({ variables: { used }, lossFn: () => tf.sum(used) as tf.Scalar, clip_grad_nrom: 1 } as never)).toThrow(
      "did you mean 'clip_grad_norm'?",
    );
    for (const t of [trainer, ok]) t.dispose();
    tf.dispose([used, unused]);
  });
});
