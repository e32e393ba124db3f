import * as tf from '@tensorflow/tfjs-core';
import { HookedModule, Linear, activation, type ActivationName, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';

/**
 * diffusers `get_timestep_embedding`: sinusoids of the timesteps [B] → [B, dim], computed in
 * float32 in torch's operation order (so timestep 999 agrees to the last bits that matter).
 * Timesteps given as numbers are embedded on the host, with correctly rounded sin/cos: GPU
 * backends compute sin/cos of large arguments only to ~5e-4.
 */
export function getTimestepEmbedding(
  timesteps: tf.Tensor1D | readonly number[],
  dim: number,
  flipSinToCos: boolean,
  downscaleFreqShift: number,
  scale = 1,
  maxPeriod = 10000,
): tf.Tensor2D {
  const half = Math.floor(dim / 2);
  if (!(timesteps instanceof tf.Tensor)) {
    const f = Math.fround;
    const freqs = Array.from({ length: half }, (_, i) => f(Math.exp(f(f(i * f(-Math.log(maxPeriod))) / (half - downscaleFreqShift)))));
    const emb = new Float32Array(timesteps.length * dim); // [B, dim], the odd column (if any) stays 0
    timesteps.forEach((t, b) =>
      freqs.forEach((freq, i) => {
        let arg = f(f(t) * freq);
        if (scale !== 1) arg = f(arg * scale);
        const [first, second] = flipSinToCos ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
        emb[b * dim + i] = first;
        emb[b * dim + half + i] = second;
      }),
    );
    return tf.tensor2d(emb, [timesteps.length, dim]);
  }
  const exponent = tf.div(tf.mul(tf.range(0, half, 1, 'float32'), -Math.log(maxPeriod)), half - downscaleFreqShift); // [half]
  const freqs = tf.exp(exponent);
  let args = tf.mul(tf.reshape(tf.cast(timesteps, 'float32'), [-1, 1]), tf.reshape(freqs, [1, half])); // [B, half]
  if (scale !== 1) args = tf.mul(args, scale);
  let emb = flipSinToCos ? tf.concat([tf.cos(args), tf.sin(args)], 1) : tf.concat([tf.sin(args), tf.cos(args)], 1); // [B, 2·half]
  if (dim % 2 === 1) emb = tf.pad(emb, [[0, 0], [0, 1]]);
  return emb as tf.Tensor2D;
}

/** diffusers `Timesteps`: a parameter-free module around getTimestepEmbedding (path `time_proj`). */
export class Timesteps extends HookedModule {
  constructor(
    scope: WeightScope,
    runtime: ModelRuntime,
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
  ) {
    super(scope, runtime);
  }

  /** Timesteps as numbers are embedded on the host (exact on every backend); hooks see them as a [B] tensor. */
  forward(timesteps: tf.Tensor1D | readonly number[], context: ForwardContext): tf.Tensor2D {
    const values = timesteps instanceof tf.Tensor ? undefined : timesteps;
    const input = values ? tf.tensor1d([...values], 'float32') : (timesteps as tf.Tensor1D);
    return this.hooked(input as tf.Tensor, context, (t) =>
      getTimestepEmbedding(values && t === input ? values : (t as tf.Tensor1D), this.numChannels, this.flipSinToCos, this.downscaleFreqShift),
    ) as tf.Tensor2D;
  }
}

/** diffusers `TimestepEmbedding`: linear_1 → act → linear_2. */
export class TimestepEmbedding extends HookedModule {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(scope: WeightScope, runtime: ModelRuntime, inChannels: number, timeEmbedDim: number, act: ActivationName) {
    super(scope, runtime);
    this.linear_1 = new Linear(scope.pp('linear_1'), inChannels, timeEmbedDim);
    this.linear_2 = new Linear(scope.pp('linear_2'), timeEmbedDim, timeEmbedDim);
    this.act = activation(act);
  }

  /** [B, in] → [B, D] */
  forward(x: tf.Tensor2D, context: ForwardContext): tf.Tensor2D {
    return this.hooked(x, context, (input) => this.linear_2.forward(this.act(this.linear_1.forward(input))) as tf.Tensor2D);
  }
}
