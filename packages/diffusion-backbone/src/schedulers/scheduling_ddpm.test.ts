import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, setBackend } from '@png/core';
import { expectClose, expectNoLeak, randn } from '@png/core/testing';
import { DDPMScheduler, SD_SCHEDULER_CONFIG, noiseSchedule, resolveSchedulerConfig, type SchedulerConfig } from './scheduling_ddpm';

/**
 * References are computed here in float64 from the definitions (diffusers v0.25.1 computes in
 * torch.float32, so agreement is required to float32 rounding, not bit for bit).
 */
function schedule64(c: Pick<SchedulerConfig, 'num_train_timesteps' | 'beta_start' | 'beta_end' | 'beta_schedule'>): {
  betas: number[];
  alphasCumprod: number[];
} {
  const n = c.num_train_timesteps;
  const lin = (a: number, b: number) => Array.from({ length: n }, (_, t) => a + ((b - a) * t) / (n - 1));
  const betas = c.beta_schedule === 'linear' ? lin(c.beta_start, c.beta_end) : lin(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end)).map((s) => s * s);
  let p = 1;
  return { betas, alphasCumprod: betas.map((b) => (p *= 1 - b)) };
}

/** Max |a − b| / |b| over all entries. */
function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]) / Math.abs(b[i]));
  return e;
}

/** Stable Diffusion v1.5's scheduler/scheduler_config.json, verbatim (a PNDMScheduler config). */
const SD15_SCHEDULER_JSON = {
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
};

const F32_ULP = 2 ** -23; // float32 relative spacing at 1

describe('resolveSchedulerConfig', () => {
  it("defaults to SD's schedule, frozen", () => {
    const c = resolveSchedulerConfig();
    expect(c).toEqual(SD_SCHEDULER_CONFIG);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(SD_SCHEDULER_CONFIG)).toBe(true);
    expect(SD_SCHEDULER_CONFIG).toMatchObject({
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      prediction_type: 'epsilon',
      set_alpha_to_one: false,
      steps_offset: 1,
      timestep_spacing: 'leading',
      clip_sample: false,
      trained_betas: null,
    });
  });

  it("reads SD v1.5's scheduler_config.json (a PNDMScheduler config): foreign keys and metadata accepted and dropped", () => {
    const c = resolveSchedulerConfig(SD15_SCHEDULER_JSON);
    expect(c).toEqual(SD_SCHEDULER_CONFIG); // exactly the SchedulerConfig fields: no _class_name, skip_prk_steps, …
    expect(Object.keys(c).sort()).toEqual(Object.keys(SD_SCHEDULER_CONFIG).sort());
    expect(new DDPMScheduler(SD15_SCHEDULER_JSON).config).toEqual(SD_SCHEDULER_CONFIG);
  });

  it('reads a diffusers DDPMScheduler config (v-prediction, linear betas, DDPM-only keys)', () => {
    const c = resolveSchedulerConfig({
      _class_name: 'DDPMScheduler',
      _diffusers_version: '0.25.1',
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: 'linear',
      trained_betas: null,
      variance_type: 'fixed_small',
      clip_sample: true,
      prediction_type: 'v_prediction',
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      clip_sample_range: 1.0,
      sample_max_value: 1.0,
      timestep_spacing: 'leading',
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    });
    expect(c).toEqual({
      ...SD_SCHEDULER_CONFIG,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: 'linear',
      clip_sample: true,
      prediction_type: 'v_prediction',
      steps_offset: 0,
    });
  });

  it.each([
    [{ beta_strat: 0.001 }, 'beta_strat', /did you mean 'beta_start'/],
    [{ num_inference_steps: 50 }, 'num_inference_steps', /unknown field/],
    [{ beta_start: 0.02, beta_end: 0.01 }, 'beta_end', /beta_start = 0\.02/],
    [{ beta_start: 0 }, 'beta_start', /\(0, 1\)/],
    [{ beta_end: 1 }, 'beta_end', /got 1$/],
    [{ thresholding: true }, 'thresholding', /not supported/],
    [{ trained_betas: [0.1, 0.2] }, 'trained_betas', /not supported/],
    [{ rescale_betas_zero_snr: true }, 'rescale_betas_zero_snr', /not supported/],
    [{ beta_schedule: 'squaredcos_cap_v2' }, 'beta_schedule', /got "squaredcos_cap_v2"/],
    [{ prediction_type: 'sample' }, 'prediction_type', /'epsilon' or 'v_prediction'/],
    [{ timestep_spacing: 'uniform' }, 'timestep_spacing', /'leading', 'trailing' or 'linspace'/],
    [{ num_train_timesteps: 1 }, 'num_train_timesteps', /≥ 2/],
    [{ num_train_timesteps: 999.5 }, 'num_train_timesteps', /got 999\.5/],
    [{ steps_offset: -1 }, 'steps_offset', /≥ 0/],
    [{ clip_sample_range: 0 }, 'clip_sample_range', /> 0/],
    [{ set_alpha_to_one: 'false' }, 'set_alpha_to_one', /a boolean/],
  ] as [Record<string, unknown>, string, RegExp][])('%j → an error naming %s', (json, field, detail) => {
    let err: unknown;
    try {
      resolveSchedulerConfig(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe(field);
    expect((err as Error).message).toContain(`SchedulerConfig.${field}`);
    expect((err as Error).message).toMatch(detail);
    expect(() => new DDPMScheduler(json)).toThrow(`SchedulerConfig.${field}`);
  });
});

describe('noiseSchedule', () => {
  it.each([
    ['scaled_linear (SD)', SD_SCHEDULER_CONFIG],
    ['linear (diffusers DDPM default)', resolveSchedulerConfig({ beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 })],
    ['scaled_linear over 10 train steps', resolveSchedulerConfig({ num_train_timesteps: 10 })],
  ] as [string, SchedulerConfig][])('%s: float32 βₜ and ᾱₜ agree with float64 to float32 rounding', (_, config) => {
    const { betas, alphasCumprod } = noiseSchedule(config);
    const ref = schedule64(config);
    const n = config.num_train_timesteps;
    expect(betas).toBeInstanceOf(Float32Array);
    expect(alphasCumprod).toBeInstanceOf(Float32Array);
    expect([betas.length, alphasCumprod.length]).toEqual([n, n]);
    // βₜ: a float32 linspace (squared): a few roundings each.
    expect(maxRelErr(betas, ref.betas)).toBeLessThanOrEqual(1e-6);
    // ᾱₜ: a float32 running product over up to 1000 factors accumulates up to ~1 rounding per
    // factor (measured 1.6e-6 for SD's); each factor must be right to a few ulps.
    expect(maxRelErr(alphasCumprod, ref.alphasCumprod)).toBeLessThanOrEqual(1e-5);
    expect(Math.abs(alphasCumprod[0] - (1 - betas[0]))).toBeLessThanOrEqual(F32_ULP);
    for (let t = 1; t < n; t++) expect(Math.abs(alphasCumprod[t] / alphasCumprod[t - 1] - (1 - betas[t]))).toBeLessThanOrEqual(4 * F32_ULP);
    // endpoints (to float32 precision), monotonicity, range
    expect(Math.abs(betas[0] - config.beta_start)).toBeLessThanOrEqual(2 * F32_ULP * config.beta_start);
    expect(Math.abs(betas[n - 1] - config.beta_end)).toBeLessThanOrEqual(2 * F32_ULP * config.beta_end);
    for (let t = 1; t < n; t++) {
      expect(betas[t]).toBeGreaterThan(betas[t - 1]);
      expect(alphasCumprod[t]).toBeLessThan(alphasCumprod[t - 1]);
    }
    expect(alphasCumprod[n - 1]).toBeGreaterThan(0);
    expect(alphasCumprod[0]).toBeLessThan(1);
  });

  it("SD's schedule: β₀ = 0.00085, β₉₉₉ = 0.012, ᾱ₉₉₉ ≈ 0.004660 (float32)", () => {
    const { betas, alphasCumprod } = noiseSchedule(SD_SCHEDULER_CONFIG);
    expect(betas[0]).toBeCloseTo(0.00085, 10);
    expect(betas[999]).toBeCloseTo(0.012, 8);
    expect(Math.abs(alphasCumprod[999] - schedule64(SD_SCHEDULER_CONFIG).alphasCumprod[999])).toBeLessThan(1e-8);
    expect(alphasCumprod[999]).toBeCloseTo(0.00466, 5);
    // the scaled-linear schedule is not the linear one
    expect(maxRelErr(betas, noiseSchedule({ ...SD_SCHEDULER_CONFIG, beta_schedule: 'linear' }).betas)).toBeGreaterThan(0.1);
  });

  it('DDPMScheduler exposes the same schedule', () => {
    const s = new DDPMScheduler();
    const { betas, alphasCumprod } = noiseSchedule(SD_SCHEDULER_CONFIG);
    expect(s.config).toEqual(SD_SCHEDULER_CONFIG);
    expect(Array.from(s.betas)).toEqual(Array.from(betas));
    expect(Array.from(s.alphasCumprod)).toEqual(Array.from(alphasCumprod));
  });
});

describe.each(['cpu', 'wasm'] as const)('DDPMScheduler on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  const [B, H, W, C] = [3, 2, 3, 4];
  const per = H * W * C;
  const timesteps = [0, 499, 999];
  const ab = schedule64(SD_SCHEDULER_CONFIG).alphasCumprod;
  const x0v = randn(B * per, 1),
    epsv = randn(B * per, 2);
  /** Per sample b: coefficient(ᾱ_t[b]) applied elementwise. */
  const expected = (f: (a: number, x: number, e: number) => number, ts = timesteps) =>
    Array.from({ length: B * per }, (_, i) => f(ab[ts[Math.floor(i / per)]], x0v[i], epsv[i]));

  let x0: tf.Tensor4D, eps: tf.Tensor4D;
  beforeEach(() => {
    x0 = tf.tensor4d(x0v, [B, H, W, C]);
    eps = tf.tensor4d(epsv, [B, H, W, C]);
  });
  afterEach(() => tf.dispose([x0, eps]));

  it('addNoise: xₜ = √ᾱₜ·x₀ + √(1 − ᾱₜ)·ε, one timestep per sample', async () => {
    const s = new DDPMScheduler();
    const xt = s.addNoise(x0, eps, timesteps);
    expect(xt.shape).toEqual([B, H, W, C]);
    await expectClose(
      xt,
      expected((a, x, e) => Math.sqrt(a) * x + Math.sqrt(1 - a) * e),
      1e-5,
      'addNoise',
    );
    xt.dispose();
    // the same timestep for every sample, and the timesteps in another order
    const same = s.addNoise(x0, eps, [250, 250, 250]);
    await expectClose(
      same,
      expected((a, x, e) => Math.sqrt(a) * x + Math.sqrt(1 - a) * e, [250, 250, 250]),
      1e-5,
      'addNoise t=250',
    );
    const rev = s.addNoise(x0, eps, [999, 0, 499]);
    await expectClose(
      rev,
      expected((a, x, e) => Math.sqrt(a) * x + Math.sqrt(1 - a) * e, [999, 0, 499]),
      1e-5,
      'addNoise reordered',
    );
    tf.dispose([same, rev]);
    expect(x0.isDisposed || eps.isDisposed).toBe(false); // inputs are the caller's
  });

  it('target: ε for epsilon prediction (a new tensor)', async () => {
    const s = new DDPMScheduler();
    const target = s.target(x0, eps, timesteps);
    expect(target).not.toBe(eps);
    await expectClose(target, epsv, 0, 'epsilon target');
    target.dispose();
    expect(eps.isDisposed).toBe(false);
  });

  it('target: v = √ᾱₜ·ε − √(1 − ᾱₜ)·x₀ for v_prediction; x₀ = √ᾱ·xₜ − √(1−ᾱ)·v and ε = √ᾱ·v + √(1−ᾱ)·xₜ recover the inputs', async () => {
    const s = new DDPMScheduler({ prediction_type: 'v_prediction' });
    const v = s.target(x0, eps, timesteps);
    expect(v.shape).toEqual([B, H, W, C]);
    await expectClose(
      v,
      expected((a, x, e) => Math.sqrt(a) * e - Math.sqrt(1 - a) * x),
      1e-5,
      'v target',
    );
    const xt = s.addNoise(x0, eps, timesteps);
    const [xv, vv] = [await xt.data(), await v.data()];
    await expectClose(
      expected((a, _x, _e) => a).map((a, i) => Math.sqrt(a) * xv[i] - Math.sqrt(1 - a) * vv[i]),
      x0v,
      1e-5,
      'x₀ from (xₜ, v)',
    );
    await expectClose(
      expected((a, _x, _e) => a).map((a, i) => Math.sqrt(a) * vv[i] + Math.sqrt(1 - a) * xv[i]),
      epsv,
      1e-5,
      'ε from (xₜ, v)',
    );
    tf.dispose([v, xt]);
  });

  it('rejects timesteps outside [0, T) or not integers, and a timestep count unlike the batch', () => {
    const s = new DDPMScheduler();
    expect(() => s.addNoise(x0, eps, [0, 1])).toThrow('2 timesteps for a batch of 3');
    expect(() => s.addNoise(x0, eps, [0, 1000, 2])).toThrow('timestep 1000 is not an integer in [0, 1000)');
    expect(() => s.addNoise(x0, eps, [0, -1, 2])).toThrow('timestep -1');
    expect(() => s.addNoise(x0, eps, [0, 1.5, 2])).toThrow('timestep 1.5');
    expect(() => new DDPMScheduler({ prediction_type: 'v_prediction' }).target(x0, eps, [0, 1000, 2])).toThrow('timestep 1000');
  });

  it('leaks no tensors (addNoise, both targets, and on error)', async () => {
    const s = new DDPMScheduler(),
      sv = new DDPMScheduler({ prediction_type: 'v_prediction' });
    await expectNoLeak(() => s.addNoise(x0, eps, timesteps), 'addNoise');
    await expectNoLeak(() => s.target(x0, eps, timesteps), 'epsilon target');
    await expectNoLeak(() => sv.target(x0, eps, timesteps), 'v target');
    await expectNoLeak(() => expect(() => s.addNoise(x0, eps, [0, 1, 1000])).toThrow(), 'addNoise error');
    await expectNoLeak(() => tf.grad((x: tf.Tensor) => tf.sum(sv.target(x as tf.Tensor4D, eps, timesteps)))(x0), 'gradient through v target');
  });
});
