import * as tf from '@tensorflow/tfjs-core';

/**
 * What Conv2d hands a strategy besides the input (cf. F.conv2d's arguments): its weight in torch
 * layout, its load-time layout if any, stride and padding.
 */
export interface Conv2dArgs {
  readonly weight: tf.Tensor4D; // [O, I, kh, kw]
  /** The weight as HWIO [kh, kw, I, O], made at load time by the strategy's `convKernel`. */
  readonly kernel?: tf.Tensor4D;
  readonly stride: number;
  /** Explicit padding, as PyTorch's: [[top, bottom], [left, right]]. */
  readonly padding: readonly [readonly [number, number], readonly [number, number]];
}

/**
 * How the nn primitives compute on one backend: the seam between `nn/` (modules in torch terms)
 * and the backends' own rooms (`backends/wasm/`). Weights arrive in torch layout, as the
 * checkpoint stores them; what a backend does with them (packs, streams, copies at load time) is
 * its strategy's business. `backendStrategy()` gives the current backend's.
 */
export interface BackendStrategy {
  /**
   * x [N, K] · wᵀ → [N, O] for a weight w [O, …] in torch layout read as [O, K] (nn.Linear's, a
   * 1×1 conv's). Gradients reach x and a trainable w.
   */
  linear(x: tf.Tensor2D, weight: tf.Tensor): tf.Tensor2D;
  /** A convolution of x [B, H, W, I] (NHWC) → [B, Ho, Wo, O], without bias. */
  conv2d(x: tf.Tensor4D, conv: Conv2dArgs): tf.Tensor4D;
  /**
   * The layout that the conv weight [O, I, kh, kw] keeps from load time beside its own (HWIO), or
   * undefined for none. Asked once per weight, as it is loaded.
   */
  convKernel(weight: tf.Tensor4D): tf.Tensor4D | undefined;
  /**
   * A float32 tensor of `shape` whose values `fill` writes into the array it is given (how
   * checkpoint bytes are loaded); `fill` must not run tfjs ops.
   */
  tensorFilledBy(shape: number[], fill: (values: Float32Array) => void): tf.Tensor;
}

/** A torch-layout weight [O, …] (Linear's [O, K], a conv's [O, I, kh, kw]) as the matrix [O, K]. */
export function asMatrix(w: tf.Tensor): tf.Tensor2D {
  return (w.rank === 2 ? w : tf.reshape(w, [w.shape[0], -1])) as tf.Tensor2D; // [O, K]
}

/** The conv weight [O, I, kh, kw] as tf.conv2d's filter [kh, kw, I, O]. */
export function hwio(weight: tf.Tensor4D): tf.Tensor4D {
  return tf.transpose(weight, [2, 3, 1, 0]); // [kh, kw, I, O]
}

/** Output height and width of `conv` on x [B, H, W, I]. */
export function convOutputSize(x: tf.Tensor4D, conv: Conv2dArgs): [number, number] {
  const [, H, W] = x.shape;
  const [[t, b], [l, r]] = conv.padding;
  const [k, s] = [conv.weight.shape[2], conv.stride];
  return [Math.floor((H + t + b - k) / s) + 1, Math.floor((W + l + r - k) / s) + 1];
}

/**
 * A 1×1 convolution with stride 1 and no padding is a Linear over pixels: computed so through
 * `strategy.linear`. Undefined for any other convolution.
 */
export function pointwiseConv2d(strategy: BackendStrategy, x: tf.Tensor4D, conv: Conv2dArgs): tf.Tensor4D | undefined {
  const [o, i, k] = conv.weight.shape;
  const [[t, b], [l, r]] = conv.padding;
  if (k !== 1 || conv.stride !== 1 || t + b + l + r !== 0) return undefined;
  const [B, H, W] = x.shape;
  return tf.reshape(strategy.linear(tf.reshape(x, [B * H * W, i]) as tf.Tensor2D, conv.weight), [B, H, W, o]); // [B·H·W, O] → [B, H, W, O]
}

/**
 * Every backend but wasm (cpu, webgpu): tfjs' own kernels. A frozen conv weight keeps an HWIO copy
 * from load time, so a forward transposes nothing; a trainable one (a tf.Variable, which an
 * optimizer updates) is transposed in each forward, so its gradient reaches it.
 */
export const portableStrategy: BackendStrategy = {
  linear: (x, weight) => tf.tidy(() => tf.matMul(x, asMatrix(weight), false, true)), // [N, K] · [O, K]ᵀ
  conv2d(x, conv) {
    const [[t, b], [l, r]] = conv.padding;
    return (
      pointwiseConv2d(this, x, conv) ??
      tf.conv2d(x, conv.kernel ?? hwio(conv.weight), conv.stride, [
        [0, 0],
        [t, b],
        [l, r],
        [0, 0],
      ])
    );
  },
  convKernel: (weight) => (weight instanceof tf.Variable ? undefined : hwio(weight)),
  tensorFilledBy(shape, fill) {
    const values = new Float32Array(tf.util.sizeFromShape(shape));
    fill(values);
    return tf.tensor(values, shape, 'float32');
  },
};
