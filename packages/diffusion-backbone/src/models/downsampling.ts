import * as tf from '@tensorflow/tfjs-core';
import { Conv2d, HookedModule, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';

/**
 * diffusers `Downsample2D` with `use_conv=True`: a stride-2 3×3 conv named `conv`. With
 * `padding: 0` (the VAE) the input is first padded asymmetrically, right and bottom by one.
 */
export class Downsample2D extends HookedModule {
  readonly conv: Conv2d;

  constructor(scope: WeightScope, runtime: ModelRuntime, channels: number, outChannels: number, padding: number) {
    super(scope, runtime);
    const pad = padding === 0 ? ([[0, 1], [0, 1]] as const) : padding;
    this.conv = new Conv2d(scope.pp('conv'), channels, outChannels, 3, { stride: 2, padding: pad });
  }

  /** [B, H, W, C] → [B, H/2, W/2, C'] */
  forward(x: tf.Tensor4D, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (input) => this.conv.forward(input));
  }
}
