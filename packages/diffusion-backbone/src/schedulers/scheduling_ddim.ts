import * as tf from '@tensorflow/tfjs-core';
import { isPositiveInt } from '@png/core';
import { noiseSchedule, resolveSchedulerConfig, type SchedulerConfig } from './scheduling_ddpm';

const f32 = Math.fround;

/** numpy's round: halves to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * diffusers `DDIMScheduler` (v0.25.1): deterministic (η = 0) or stochastic DDIM sampling over
 * the training noise schedule. `setTimesteps(n)` picks the inference timesteps; `step` moves the
 * sample from one to the next. Scalars are computed in float32, as diffusers' torch tensors are.
 */
export class DDIMScheduler {
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  /** The inference timesteps, high to low (after setTimesteps). */
  timesteps: number[] = [];
  private numInferenceSteps = 0;

  constructor(config: Partial<SchedulerConfig> | Record<string, unknown> = {}) {
    this.config = resolveSchedulerConfig(config);
    this.alphasCumprod = noiseSchedule(this.config).alphasCumprod;
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /** The initial noise's standard deviation (1 for DDIM). */
  get initNoiseSigma(): number {
    return 1;
  }

  /** Chooses `numInferenceSteps` timesteps by the config's timestep_spacing. */
  setTimesteps(numInferenceSteps: number): void {
    const T = this.config.num_train_timesteps;
    if (!(isPositiveInt(numInferenceSteps) && numInferenceSteps <= T))
      throw new Error(`DDIMScheduler.setTimesteps: numInferenceSteps must be an integer in [1, ${T}], got ${numInferenceSteps}`);
    const n = numInferenceSteps;
    const offset = this.config.steps_offset;
    let ts: number[];
    if (this.config.timestep_spacing === 'linspace') {
      const step = (T - 1) / Math.max(1, n - 1); // np.linspace(0, T − 1, n): i·step, the last exactly T − 1
      ts = Array.from({ length: n }, (_, i) => roundHalfEven(i === n - 1 && n > 1 ? T - 1 : i * step)).reverse();
    } else if (this.config.timestep_spacing === 'leading') {
      const ratio = Math.floor(T / n);
      ts = Array.from({ length: n }, (_, i) => i * ratio + offset).reverse();
    } else {
      const ratio = T / n;
      // np.round(np.arange(T, 0, −ratio)) − 1. numpy's float arange fills start + i·((start − ratio) − start),
      // which can fall either side of an exact half (e.g. n = 48: 937.4999…, not 937.5); n values kept (numpy may add a −1).
      const delta = T - ratio - T;
      ts = Array.from({ length: n }, (_, i) => roundHalfEven(T + i * delta) - 1);
    }
    this.timesteps = ts;
    this.numInferenceSteps = n;
  }

  /**
   * One DDIM step from `timestep` to the previous inference timestep: the model output (ε or v,
   * per prediction_type) and the current sample [B, h, w, C] give the less noisy sample. With
   * eta > 0, `noise` (standard normal, the sample's shape) adds DDIM's stochastic part.
   * Caller owns the result; inputs are not disposed.
   */
  step(modelOutput: tf.Tensor4D, timestep: number, sample: tf.Tensor4D, options: { eta?: number; noise?: tf.Tensor4D } = {}): tf.Tensor4D {
    if (this.numInferenceSteps === 0) throw new Error('DDIMScheduler.step: call setTimesteps(numInferenceSteps) first');
    const eta = options.eta ?? 0;
    const noise = eta > 0 ? options.noise : undefined;
    if (eta > 0 && !noise) throw new Error("DDIMScheduler.step: eta > 0 needs `noise` (a standard normal tensor of the sample's shape)");
    const T = this.config.num_train_timesteps;
    if (!(Number.isInteger(timestep) && timestep >= 0 && timestep < T))
      throw new Error(`DDIMScheduler.step: timestep ${timestep} is not an integer in [0, ${T})`);
    const prev = timestep - Math.floor(T / this.numInferenceSteps);
    const aT = this.alphasCumprod[timestep];
    const aPrev = prev >= 0 ? this.alphasCumprod[prev] : this.finalAlphaCumprod;
    const bT = f32(1 - aT);
    const variance = f32(f32(f32(1 - aPrev) / bT) * f32(1 - f32(aT / aPrev)));
    const std = f32(eta * f32(Math.sqrt(variance)));
    return tf.tidy(() => {
      let x0: tf.Tensor;
      let eps: tf.Tensor;
      if (this.config.prediction_type === 'epsilon') {
        eps = modelOutput;
        x0 = tf.div(tf.sub(sample, tf.mul(f32(Math.sqrt(bT)), eps)), f32(Math.sqrt(aT))); // (xₜ − √(1−ᾱₜ)·ε) / √ᾱₜ
      } else {
        x0 = tf.sub(tf.mul(f32(Math.sqrt(aT)), sample), tf.mul(f32(Math.sqrt(bT)), modelOutput)); // √ᾱ·xₜ − √(1−ᾱ)·v
        eps = tf.add(tf.mul(f32(Math.sqrt(aT)), modelOutput), tf.mul(f32(Math.sqrt(bT)), sample)); // √ᾱ·v + √(1−ᾱ)·xₜ
      }
      if (this.config.clip_sample) x0 = tf.clipByValue(x0, -this.config.clip_sample_range, this.config.clip_sample_range);
      const direction = tf.mul(f32(Math.sqrt(f32(f32(1 - aPrev) - f32(std * std)))), eps);
      let prevSample = tf.add(tf.mul(f32(Math.sqrt(aPrev)), x0), direction);
      if (noise) prevSample = tf.add(prevSample, tf.mul(std, noise));
      return prevSample as tf.Tensor4D;
    });
  }
}
