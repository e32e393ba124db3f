import * as tf from '@tensorflow/tfjs-core';

/**
 * The seed to pass to tfjs' random ops for an integer `seed`. tfjs reads a seed of 0 as "no seed"
 * (it draws one from Math.random), so 0 is passed as 0.5, a seed no integer uses; every other
 * integer is passed as it is.
 */
export function tfSeed(seed: number): number {
  return seed === 0 ? 0.5 : seed;
}

/** Standard normal values of `shape`, the same for the same integer `seed` (0 included). */
export function seededNormal(shape: readonly number[], seed: number): tf.Tensor {
  return tf.randomNormal([...shape], 0, 1, 'float32', tfSeed(seed));
}
