import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectClose, expectNoLeak, randn } from '@png/core/testing';
import { DDIMScheduler } from './scheduling_ddim';
import { SD_SCHEDULER_CONFIG, noiseSchedule, type SchedulerConfig } from './scheduling_ddpm';

/** SD's ᾱₜ in float64, from the definition (scaled-linear βₜ), independent of the port. */
const AB: number[] = (() => {
  const [s0, s1, n] = [Math.sqrt(0.00085), Math.sqrt(0.012), 1000];
  let p = 1;
  return Array.from({ length: n }, (_, t) => (p *= 1 - (s0 + ((s1 - s0) * t) / (n - 1)) ** 2));
})();

const timestepsOf = (config: Partial<SchedulerConfig>, n: number) => {
  const s = new DDIMScheduler(config);
  s.setTimesteps(n);
  return s.timesteps;
};

describe('DDIMScheduler.setTimesteps (diffusers v0.25.1; references from numpy)', () => {
  it("leading with SD's config (steps_offset 1): 50 steps → [981, 961, …, 21, 1]", () => {
    const ts = timestepsOf({}, 50);
    expect(ts).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
    expect(ts.slice(0, 3)).toEqual([981, 961, 941]);
    expect(ts.slice(-3)).toEqual([41, 21, 1]);
  });

  it('leading: T // n spacing plus steps_offset', () => {
    expect(timestepsOf({}, 3)).toEqual([667, 334, 1]); // 1000 // 3 = 333
    expect(timestepsOf({ steps_offset: 0 }, 4)).toEqual([750, 500, 250, 0]);
    expect(timestepsOf({}, 1)).toEqual([1]);
    expect(timestepsOf({ steps_offset: 0 }, 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => 999 - i));
  });

  it('trailing: np.round(np.arange(T, 0, −T/n)) − 1 (steps_offset not added)', () => {
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 10)).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(timestepsOf({ timestep_spacing: 'trailing', steps_offset: 0 }, 10)).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 3)).toEqual([999, 666, 332]);
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 7)).toEqual([999, 856, 713, 570, 428, 285, 142]);
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 1)).toEqual([999]);
  });

  it("trailing: exact halves fall as numpy's float arange makes them (start + i·((start − step) − start))", () => {
    // 1000 − 3·(1000/48) = 937.5 exactly, but numpy's arange yields 937.4999…, rounded to 937 (then − 1).
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 48)).toEqual([
      999, 978, 957, 936, 916, 895, 874, 853, 832, 811, 791, 770, 749, 728, 707, 686, 666, 645, 624, 603, 582, 561, 541, 520, 499, 478, 457, 436, 416, 395, 374,
      353, 332, 311, 291, 270, 249, 228, 207, 186, 166, 145, 124, 103, 82, 61, 41, 20,
    ]);
    // 1000 − 18·(1000/96) = 812.5 exactly; numpy: 812.5000000000007 → 813 − 1.
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 96).slice(15, 21)).toEqual([843, 832, 822, 812, 801, 791]);
  });

  it('trailing: always n distinct timesteps in [0, T), high to low (numpy gives n + 1 ending in −1 for e.g. n = 61)', () => {
    for (let n = 1; n <= 1000; n++) {
      const ts = timestepsOf({ timestep_spacing: 'trailing' }, n);
      expect(ts.length).toBe(n);
      expect(ts[0]).toBe(999);
      expect(ts[n - 1]).toBeGreaterThanOrEqual(0);
      for (let i = 1; i < n; i++) if (!(ts[i] < ts[i - 1])) throw new Error(`n = ${n}: timesteps not decreasing at ${i}: ${ts[i - 1]}, ${ts[i]}`);
    }
    expect(timestepsOf({ timestep_spacing: 'trailing' }, 61).slice(-3)).toEqual([48, 32, 15]);
  });

  it("linspace: np.linspace(0, T − 1, n).round()[::-1], numpy's half-to-even rounding (steps_offset not added)", () => {
    expect(timestepsOf({ timestep_spacing: 'linspace' }, 10)).toEqual([999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // 0, 166.5, 333, 499.5, 666, 832.5, 999 → halves to the even neighbour
    expect(timestepsOf({ timestep_spacing: 'linspace' }, 7)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    // T = 10: 0, 2.25, 4.5, 6.75, 9
    expect(timestepsOf({ timestep_spacing: 'linspace', num_train_timesteps: 10 }, 5)).toEqual([9, 7, 4, 2, 0]);
    expect(timestepsOf({ timestep_spacing: 'linspace' }, 4)).toEqual([999, 666, 333, 0]);
    expect(timestepsOf({ timestep_spacing: 'linspace' }, 1)).toEqual([0]);
    expect(timestepsOf({ timestep_spacing: 'linspace' }, 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => 999 - i));
  });

  it('rejects a step count outside [1, T] or not an integer; setTimesteps again replaces the schedule', () => {
    const s = new DDIMScheduler();
    for (const n of [0, -1, 2.5, 1001, NaN]) expect(() => s.setTimesteps(n)).toThrow('numInferenceSteps must be an integer in [1, 1000]');
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([751, 501, 251, 1]);
  });

  it('is built on the DDPM noise schedule; initial noise σ = 1; bad config fields name the field', () => {
    const s = new DDIMScheduler();
    expect(s.config).toEqual(SD_SCHEDULER_CONFIG);
    expect(Array.from(s.alphasCumprod)).toEqual(Array.from(noiseSchedule(SD_SCHEDULER_CONFIG).alphasCumprod));
    expect(s.initNoiseSigma).toBe(1);
    expect(() => new DDIMScheduler({ thresholding: true })).toThrow('SchedulerConfig.thresholding');
    expect(() => new DDIMScheduler({ beta_start: 0.02, beta_end: 0.01 })).toThrow('SchedulerConfig.beta_end');
    expect(() => new DDIMScheduler({ trained_betas: [0.1] } as unknown as Record<string, unknown>)).toThrow('SchedulerConfig.trained_betas');
    expect(() => new DDIMScheduler({ eta: 0 })).toThrow('SchedulerConfig.eta');
    // SD v1.5's own scheduler_config.json (a PNDMScheduler config) is accepted
    expect(
      new DDIMScheduler({
        _class_name: 'PNDMScheduler',
        _diffusers_version: '0.6.0',
        beta_end: 0.012,
        beta_schedule: 'scaled_linear',
        beta_start: 0.00085,
        num_train_timesteps: 1000,
        set_alpha_to_one: false,
        skip_prk_steps: true,
        steps_offset: 1,
        trained_betas: null,
        clip_sample: false,
      }).config,
    ).toEqual(SD_SCHEDULER_CONFIG);
  });
});

describe.each(['cpu', 'wasm'] as const)('DDIMScheduler.step on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  const shape: [number, number, number, number] = [2, 3, 4, 2];
  const size = 2 * 3 * 4 * 2;
  const x0v = randn(size, 11),
    epsv = randn(size, 12),
    zv = randn(size, 13);
  let x0: tf.Tensor4D, eps: tf.Tensor4D, z: tf.Tensor4D;
  beforeEach(() => {
    [x0, eps, z] = [x0v, epsv, zv].map((v) => tf.tensor4d(v, shape));
  });
  afterEach(() => tf.dispose([x0, eps, z]));

  /** √ᾱ·x₀ + √(1 − ᾱ)·ε in float64 (ᾱ = 1 gives x₀). */
  const noised = (a: number) => Array.from(x0v, (x, i) => Math.sqrt(a) * x + Math.sqrt(1 - a) * epsv[i]);
  const t4 = (v: ArrayLike<number>) => tf.tensor4d(Float32Array.from(v), shape);

  it('refuses to step before setTimesteps, and with eta > 0 but no noise', () => {
    const s = new DDIMScheduler();
    expect(() => s.step(eps, 981, x0)).toThrow('call setTimesteps(numInferenceSteps) first');
    s.setTimesteps(50);
    expect(() => s.step(eps, 981, x0, { eta: 1 })).toThrow('eta > 0 needs `noise`');
    expect(() => s.step(eps, 981, x0, { eta: 0.5 })).toThrow('eta > 0 needs `noise`');
    for (const t of [1000, -1, 2.5]) expect(() => s.step(eps, t, x0)).toThrow(`timestep ${t} is not an integer in [0, 1000)`);
  });

  it("eta 0, epsilon: the exact ε of xₜ = √ᾱₜ·x₀ + √(1−ᾱₜ)·ε gives √ᾱ_prev·x₀ + √(1−ᾱ_prev)·ε at every step of SD's 50", async () => {
    const s = new DDIMScheduler();
    s.setTimesteps(50);
    for (const t of s.timesteps) {
      const prev = t - 20;
      const xt = t4(noised(AB[t]));
      const out = s.step(eps, t, xt);
      expect(out.shape).toEqual(shape);
      await expectClose(out, noised(prev >= 0 ? AB[prev] : AB[0]), 1e-5, `step t=${t}`);
      tf.dispose([xt, out]);
    }
  });

  it('the last step (prev < 0) uses ᾱ₀ when set_alpha_to_one is false, 1 (x₀ itself) when true', async () => {
    const xt = t4(noised(AB[1]));
    const sd = new DDIMScheduler(); // set_alpha_to_one: false
    sd.setTimesteps(50);
    expect(sd.timesteps[49]).toBe(1);
    const last = sd.step(eps, 1, xt);
    await expectClose(last, noised(AB[0]), 1e-5, 'last step, ᾱ₀');
    const one = new DDIMScheduler({ set_alpha_to_one: true });
    one.setTimesteps(50);
    const lastOne = one.step(eps, 1, xt);
    await expectClose(lastOne, x0v, 1e-5, 'last step, ᾱ = 1');
    // the two differ by √(1−ᾱ₀)·ε ≈ 0.03·ε: not within the tolerance above
    const diff = tf.max(tf.abs(tf.sub(last, lastOne)));
    expect((await diff.data())[0]).toBeGreaterThan(1e-2);
    // trailing schedules end at timestep 99 (10 steps): prev = −1 < 0 as well
    const tr = new DDIMScheduler({ timestep_spacing: 'trailing' });
    tr.setTimesteps(10);
    const xt99 = t4(noised(AB[99]));
    const lastTr = tr.step(eps, 99, xt99);
    await expectClose(lastTr, noised(AB[0]), 1e-5, 'trailing last step');
    tf.dispose([xt, last, lastOne, diff, xt99, lastTr]);
  });

  it('eta 0, v_prediction: v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ gives the same previous sample', async () => {
    const s = new DDIMScheduler({ prediction_type: 'v_prediction' });
    s.setTimesteps(10);
    for (const t of s.timesteps) {
      const prev = t - 100;
      const a = AB[t];
      const xt = t4(noised(a));
      const v = t4(Array.from(x0v, (x, i) => Math.sqrt(a) * epsv[i] - Math.sqrt(1 - a) * x));
      const out = s.step(v, t, xt);
      await expectClose(out, noised(prev >= 0 ? AB[prev] : AB[0]), 1e-5, `v step t=${t}`);
      tf.dispose([xt, v, out]);
    }
  });

  it('a whole deterministic sampling run with the exact ε lands on √ᾱ₀·x₀ + √(1−ᾱ₀)·ε (SD, 50 steps)', async () => {
    const s = new DDIMScheduler();
    s.setTimesteps(50);
    let x = t4(noised(AB[s.timesteps[0]]));
    for (const t of s.timesteps) {
      const next = s.step(eps, t, x);
      x.dispose();
      x = next;
    }
    await expectClose(x, noised(AB[0]), 1e-4, 'after 50 steps');
    x.dispose();
  });

  it('eta > 0: adds σ·z with σ = η·√((1−ᾱ_prev)/(1−ᾱₜ)·(1−ᾱₜ/ᾱ_prev)) and shrinks the ε direction to √(1−ᾱ_prev−σ²)', async () => {
    const s = new DDIMScheduler();
    s.setTimesteps(25); // step 40
    for (const [t, eta] of [
      [961, 1],
      [481, 0.5],
      [1, 1],
    ] as const) {
      const [a, ap] = [AB[t], t - 40 >= 0 ? AB[t - 40] : AB[0]];
      const sigma = eta * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
      const xt = t4(noised(a));
      const out = s.step(eps, t, xt, { eta, noise: z });
      const want = Array.from(x0v, (x, i) => Math.sqrt(ap) * x + Math.sqrt(1 - ap - sigma * sigma) * epsv[i] + sigma * zv[i]);
      await expectClose(out, want, 1e-5, `eta ${eta} t=${t}`);
      if (t !== 1) expect(sigma).toBeGreaterThan(1e-3); // the noise term matters here
      tf.dispose([xt, out]);
    }
    // eta 0 ignores any noise passed
    const xt = t4(noised(AB[481]));
    const out = s.step(eps, 481, xt, { eta: 0, noise: z });
    await expectClose(out, noised(AB[441]), 1e-5, 'eta 0 with noise');
    tf.dispose([xt, out]);
  });

  it('clip_sample clips the predicted x₀ to ±clip_sample_range (the ε direction keeps the model output)', async () => {
    const s = new DDIMScheduler({ clip_sample: true, clip_sample_range: 0.5 });
    s.setTimesteps(50);
    const [t, prev] = [501, 481];
    const xt = t4(noised(AB[t]));
    const out = s.step(eps, t, xt);
    const clip = (x: number) => Math.min(0.5, Math.max(-0.5, x));
    await expectClose(
      out,
      Array.from(x0v, (x, i) => Math.sqrt(AB[prev]) * clip(x) + Math.sqrt(1 - AB[prev]) * epsv[i]),
      1e-5,
      'clipped',
    );
    expect(x0v.some((x) => Math.abs(x) > 0.5)).toBe(true); // something was clipped
    tf.dispose([xt, out]);
  });

  it('leaves its inputs alone and leaks no tensors (epsilon, v, eta > 0, clip, errors)', async () => {
    const s = new DDIMScheduler(),
      sv = new DDIMScheduler({ prediction_type: 'v_prediction', clip_sample: true });
    s.setTimesteps(50);
    sv.setTimesteps(50);
    const xt = t4(noised(AB[501]));
    await expectNoLeak(() => s.step(eps, 501, xt), 'step epsilon');
    await expectNoLeak(() => s.step(eps, 1, xt), 'last step');
    await expectNoLeak(() => s.step(eps, 501, xt, { eta: 1, noise: z }), 'step eta 1');
    await expectNoLeak(() => sv.step(eps, 501, xt), 'step v + clip');
    await expectNoLeak(() => expect(() => s.step(eps, 1000, xt)).toThrow(), 'step error');
    expect([xt, eps, z].some((t) => t.isDisposed)).toBe(false);
    xt.dispose();
  });
});
