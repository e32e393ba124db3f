import * as tf from '@tensorflow/tfjs-core';
import { check, isFiniteNumber, isNonNegativeInt, isPositiveInt, resolveConfig } from '@png/core';

/**
 * The fields of a diffusers `scheduler/scheduler_config.json` that DDPM training and DDIM
 * sampling read (v0.25.1 names and defaults of DDPMScheduler / DDIMScheduler). Fields of other
 * schedulers' configs (PNDM's `skip_prk_steps`, …) are accepted and ignored, as diffusers'
 * `from_config` does; features this port lacks must stay off.
 */
export interface SchedulerConfig {
  readonly num_train_timesteps: number;
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: 'linear' | 'scaled_linear';
  /** What the UNet predicts: the noise ε or v = √ᾱ·ε − √(1−ᾱ)·x₀. */
  readonly prediction_type: 'epsilon' | 'v_prediction';
  /** DDIM: ᾱ before the first step is 1 (true) or ᾱ₀ (false, SD). */
  readonly set_alpha_to_one: boolean;
  /** Added to every inference timestep (SD: 1). */
  readonly steps_offset: number;
  readonly timestep_spacing: 'leading' | 'trailing' | 'linspace';
  /** Clip the predicted x₀ to ±clip_sample_range (DDIM). */
  readonly clip_sample: boolean;
  readonly clip_sample_range: number;
  /** Not supported: must be null / false. */
  readonly trained_betas: null;
  readonly thresholding: boolean;
  readonly rescale_betas_zero_snr: boolean;
}

/** Stable Diffusion's noise schedule (v1.x scheduler_config.json, as DDIM reads it). */
export const SD_SCHEDULER_CONFIG: SchedulerConfig = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  steps_offset: 1,
  timestep_spacing: 'leading',
  clip_sample: false,
  clip_sample_range: 1,
  trained_betas: null,
  thresholding: false,
  rescale_betas_zero_snr: false,
});

/** Keys of other diffusers schedulers' configs that are accepted and ignored. */
const FOREIGN_KEYS = [
  'skip_prk_steps',
  'variance_type',
  'dynamic_thresholding_ratio',
  'sample_max_value',
  'timestep_type',
  'interpolation_type',
  'use_karras_sigmas',
];

/** Validates `json` (a scheduler_config.json's contents) over SD's schedule. Errors name the field. */
export function resolveSchedulerConfig(json: Record<string, unknown> = {}): SchedulerConfig {
  // Foreign keys and diffusers metadata (_class_name, _diffusers_version) are dropped, not carried into the config.
  const own = Object.fromEntries(Object.entries(json).filter(([k]) => !FOREIGN_KEYS.includes(k) && !k.startsWith('_')));
  const name = 'SchedulerConfig';
  return resolveConfig(name, SD_SCHEDULER_CONFIG, own, (c) => {
    check(isPositiveInt(c.num_train_timesteps) && c.num_train_timesteps >= 2, name, 'num_train_timesteps', 'an integer ≥ 2', c.num_train_timesteps);
    check(isFiniteNumber(c.beta_start) && c.beta_start > 0 && c.beta_start < 1, name, 'beta_start', 'a number in (0, 1)', c.beta_start);
    check(
      isFiniteNumber(c.beta_end) && c.beta_end >= c.beta_start && c.beta_end < 1,
      name,
      'beta_end',
      `a number in [beta_start = ${c.beta_start}, 1)`,
      c.beta_end,
    );
    check(['linear', 'scaled_linear'].includes(c.beta_schedule), name, 'beta_schedule', "'linear' or 'scaled_linear'", c.beta_schedule);
    check(['epsilon', 'v_prediction'].includes(c.prediction_type), name, 'prediction_type', "'epsilon' or 'v_prediction'", c.prediction_type);
    check(isNonNegativeInt(c.steps_offset), name, 'steps_offset', 'an integer ≥ 0', c.steps_offset);
    check(
      ['leading', 'trailing', 'linspace'].includes(c.timestep_spacing),
      name,
      'timestep_spacing',
      "'leading', 'trailing' or 'linspace'",
      c.timestep_spacing,
    );
    check(isFiniteNumber(c.clip_sample_range) && c.clip_sample_range > 0, name, 'clip_sample_range', 'a number > 0', c.clip_sample_range);
    check(c.trained_betas === null, name, 'trained_betas', 'null (explicit betas are not supported)', c.trained_betas);
    check(c.thresholding === false, name, 'thresholding', 'false (dynamic thresholding is not supported)', c.thresholding);
    check(c.rescale_betas_zero_snr === false, name, 'rescale_betas_zero_snr', 'false (zero-SNR rescaling is not supported)', c.rescale_betas_zero_snr);
  }) as SchedulerConfig;
}

const f32 = Math.fround;

/** torch.linspace(start, end, n, dtype=float32): float32 arithmetic, the second half counted back from `end`. */
function linspaceF32(start: number, end: number, n: number): Float32Array {
  const s = f32(start),
    e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const out = new Float32Array(n);
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (n - 1 - i)));
  return out;
}

/** The float32 βₜ and ᾱₜ = Π(1 − βₛ) of `config`, computed as diffusers does in torch.float32. */
export function noiseSchedule(config: SchedulerConfig): { betas: Float32Array; alphasCumprod: Float32Array } {
  const n = config.num_train_timesteps;
  let betas: Float32Array;
  if (config.beta_schedule === 'linear') betas = linspaceF32(config.beta_start, config.beta_end, n);
  else betas = linspaceF32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n).map((b) => f32(b * b));
  const alphasCumprod = new Float32Array(n);
  let prod = 1;
  for (let t = 0; t < n; t++) alphasCumprod[t] = prod = f32(prod * f32(1 - betas[t]));
  return { betas, alphasCumprod };
}

/**
 * diffusers `DDPMScheduler`, the training side: the forward process q(xₜ | x₀) that the UNet
 * learns to invert. (Ancestral DDPM sampling is not ported; sample with DDIMScheduler.)
 */
export class DDPMScheduler {
  readonly config: SchedulerConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;

  constructor(config: Partial<SchedulerConfig> | Record<string, unknown> = {}) {
    this.config = resolveSchedulerConfig(config);
    ({ betas: this.betas, alphasCumprod: this.alphasCumprod } = noiseSchedule(this.config));
  }

  /** √ᾱₜ and √(1 − ᾱₜ) per timestep, as float32 [B, 1, 1, 1] tensors (broadcast over NHWC). */
  private coefficients(timesteps: readonly number[]): [tf.Tensor4D, tf.Tensor4D] {
    const n = this.config.num_train_timesteps;
    for (const t of timesteps) if (!(Number.isInteger(t) && t >= 0 && t < n)) throw new Error(`DDPMScheduler: timestep ${t} is not an integer in [0, ${n})`);
    const a = timesteps.map((t) => f32(Math.sqrt(this.alphasCumprod[t])));
    const b = timesteps.map((t) => f32(Math.sqrt(f32(1 - this.alphasCumprod[t]))));
    return [tf.tensor4d(a, [a.length, 1, 1, 1]), tf.tensor4d(b, [b.length, 1, 1, 1])];
  }

  /** xₜ = √ᾱₜ·x₀ + √(1 − ᾱₜ)·ε, one timestep per sample. x₀ and ε [B, H, W, C]. Caller owns the result. */
  addNoise(original: tf.Tensor4D, noise: tf.Tensor4D, timesteps: readonly number[]): tf.Tensor4D {
    if (timesteps.length !== original.shape[0]) throw new Error(`DDPMScheduler.addNoise: ${timesteps.length} timesteps for a batch of ${original.shape[0]}`);
    return tf.tidy(() => {
      const [a, b] = this.coefficients(timesteps);
      return tf.add(tf.mul(a, original), tf.mul(b, noise)) as tf.Tensor4D;
    });
  }

  /** The training target of the UNet for `prediction_type`: ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀. Caller owns the result. */
  target(original: tf.Tensor4D, noise: tf.Tensor4D, timesteps: readonly number[]): tf.Tensor4D {
    if (this.config.prediction_type === 'epsilon') return tf.clone(noise);
    return tf.tidy(() => {
      const [a, b] = this.coefficients(timesteps);
      return tf.sub(tf.mul(a, noise), tf.mul(b, original)) as tf.Tensor4D;
    });
  }
}
