import * as tf from '@tensorflow/tfjs-core';
import { Conv2d, HookedModule, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';

/** diffusers `Upsample2D` with `use_conv=True`: nearest ×2 (torch 'nearest'), then a 3×3 conv. */
export class Upsample2D extends HookedModule {
  readonly conv: Conv2d;

  constructor(scope: WeightScope, runtime: ModelRuntime, channels: number, outChannels: number) {
    super(scope, runtime);
    this.conv = new Conv2d(scope.pp('conv'), channels, outChannels, 3, { padding: 1 });
  }

  /** [B, H, W, C] → [B, 2H, 2W, C'] (or `size` when given). */
  forward(x: tf.Tensor4D, context: ForwardContext, size?: [number, number]): tf.Tensor4D {
    return this.hooked(x, context, (input) => {
      const [, h, w] = input.shape;
      // torch 'nearest' reads source index ⌊dst · in/out⌋: tfjs without align-corners/half-pixel does the same
      const up = tf.image.resizeNearestNeighbor(input, size ?? [2 * h, 2 * w], false, false);
      return this.conv.forward(up);
    });
  }
}
