import * as tf from '@tensorflow/tfjs-core';

/** x · sigmoid(x) (torch SiLU). */
export const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x));

/** Exact GELU, 0.5·x·(1 + erf(x/√2)) (torch's default `approximate='none'`). */
export const gelu = (x: tf.Tensor): tf.Tensor => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));

/** GELU, tanh approximation (torch `approximate='tanh'`, transformers 'gelu_new'). */
export const geluTanh = (x: tf.Tensor): tf.Tensor =>
  tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));

/** x · sigmoid(1.702·x) (OpenAI CLIP's quick_gelu). */
export const quickGelu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));

export type ActivationName = 'silu' | 'swish' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'quick_gelu' | 'relu';

const ACTIVATIONS: Record<ActivationName, (x: tf.Tensor) => tf.Tensor> = {
  silu,
  swish: silu,
  gelu,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  quick_gelu: quickGelu,
  relu: (x) => tf.relu(x),
};

export function isActivationName(name: unknown): name is ActivationName {
  return typeof name === 'string' && name in ACTIVATIONS;
}

/** The activation called `name` in diffusers/transformers configs. */
export function activation(name: ActivationName): (x: tf.Tensor) => tf.Tensor {
  const fn = ACTIVATIONS[name];
  if (!fn) throw new Error(`unknown activation '${name}'; expected one of ${Object.keys(ACTIVATIONS).join(', ')}`);
  return fn;
}
