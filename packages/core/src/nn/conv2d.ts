import * as tf from '@tensorflow/tfjs-core';
import { backendStrategy } from '../backends/backend';
import { convOutputSize } from '../backends/backend_strategy';
import type { WeightScope } from '../weights';

/** Explicit padding in PyTorch terms: a symmetric pad, or [[top, bottom], [left, right]]. */
export type Conv2dPadding = number | readonly [readonly [number, number], readonly [number, number]];

/**
 * Torch `nn.Conv2d` on NHWC input. The weight stays in the checkpoint's [out, in, kh, kw] layout
 * (loading copies bytes, nothing is transposed); the current backend's strategy computes the
 * convolution, and may keep a layout of its own for a frozen weight from load time (HWIO off
 * wasm). Padding is explicit, never 'same'.
 */
export class Conv2d {
  readonly weight: tf.Tensor4D; // [out, in, kh, kw]
  readonly bias?: tf.Tensor1D; // [out]
  readonly stride: number;
  private readonly padding: [[number, number], [number, number]];
  /** The weight in the layout the backend computes with, made at load time (see BackendStrategy.convKernel). */
  private readonly kernel?: tf.Tensor4D;

  constructor(
    scope: WeightScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    options: { stride?: number; padding?: Conv2dPadding; bias?: boolean } = {},
  ) {
    const fanIn = inChannels * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = scope.param('weight', [outChannels, inChannels, kernelSize, kernelSize], { init: { uniform: bound } }) as tf.Tensor4D;
    this.kernel = scope.layout('weight', (w) => backendStrategy().convKernel(w as tf.Tensor4D)) as tf.Tensor4D | undefined;
    if (options.bias ?? true) this.bias = scope.param('bias', [outChannels], { init: { uniform: bound } }) as tf.Tensor1D;
    this.stride = options.stride ?? 1;
    const p = options.padding ?? 0;
    const [[t, b], [l, r]] =
      typeof p === 'number'
        ? [
            [p, p],
            [p, p],
          ]
        : p;
    this.padding = [
      [t, b],
      [l, r],
    ];
  }

  /** [B, H, W, in] → [B, H', W', out] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (x.shape[3] !== this.inChannels) {
      throw new Error(`Conv2d: input has ${x.shape[3]} channels, expected ${this.inChannels} (input shape [${x.shape}])`);
    }
    const conv = { weight: this.weight, kernel: this.kernel, stride: this.stride, padding: this.padding };
    const [Ho, Wo] = convOutputSize(x, conv);
    if (Ho < 1 || Wo < 1) throw new Error(`Conv2d: input [${x.shape}] is smaller than the ${this.kernelSize}×${this.kernelSize} kernel`);
    let y = backendStrategy().conv2d(x, conv);
    if (this.bias) y = tf.add(y, this.bias);
    return y;
  }
}
