import type * as tf from '@tensorflow/tfjs-core';
import type { FeatureMap, FeaturePyramid } from '@png/core';
import type { AutoencoderKL } from './models/autoencoder_kl';
import type { UNet2DConditionModel } from './models/unet_2d_condition';

/** Key under which a tapped level lands in the UNet's `outputs` (read them with `pyramid`). */
const featureKey = (level: string): string => `features/${level}`;

/**
 * Records the hidden state of chosen up blocks at the resolution they work at (before their
 * upsampler; the last block's output) into the forward's outputs, through block hooks only.
 * `imageStride` converts latent strides to input-image strides (8 for SD's VAE).
 */
export class FeatureTaps {
  private readonly removers: Array<() => void> = [];
  readonly levels: readonly string[];

  constructor(
    private readonly unet: UNet2DConditionModel,
    options: { levels?: readonly string[]; imageStride?: number } = {},
  ) {
    const shapes = unet.upBlockShapes();
    this.levels = options.levels ?? Object.keys(shapes);
    this.imageStride = options.imageStride ?? 8;
    for (const level of this.levels) {
      const block = unet.up_blocks[Number(/^up_blocks\.(\d+)$/.exec(level)?.[1] ?? NaN)];
      if (!block) throw new Error(`FeatureTaps: '${level}' is not an up block of this UNet (${Object.keys(shapes).join(', ')})`);
      const record = (_: string, x: tf.Tensor, ctx: { outputs: Record<string, tf.Tensor> }) => {
        ctx.outputs[featureKey(level)] = x;
      };
      this.removers.push(
        block.upsamplers.length ? unet.addBlockHook(`${level}.upsamplers.0`, { preForward: record }) : unet.addBlockHook(level, { postForward: record }),
      );
    }
  }

  readonly imageStride: number;

  /** The tapped levels of one forward's outputs, coarsest first, with input-image strides. */
  pyramid(outputs: Record<string, tf.Tensor>): FeaturePyramid {
    const shapes = this.unet.upBlockShapes();
    return this.levels.map((level): FeatureMap => {
      const tensor = outputs[featureKey(level)];
      if (!tensor) throw new Error(`FeatureTaps: no '${level}' in these outputs; were they produced by a forward of the tapped UNet?`);
      return { tensor: tensor as tf.Tensor4D, stride: shapes[level].stride * this.imageStride, name: level };
    });
  }

  /** Removes the hooks. */
  remove(): void {
    for (const r of this.removers.splice(0)) r();
  }
}

/**
 * Records the hidden state of chosen VAE encoder down blocks (`encoder.down_blocks.<i>`, at image
 * strides 1, 2, 4, … before their downsampler; the last block's output) into `vae.encode`'s
 * outputs, through block hooks only: the high-resolution maps of the frozen encoder that already
 * runs to make the latents (VPD / ODISE read the frozen model's own features the same way).
 */
export class EncoderFeatureTaps {
  private readonly removers: Array<() => void> = [];
  readonly levels: readonly string[];

  constructor(
    private readonly vae: AutoencoderKL,
    options: { levels?: readonly string[] } = {},
  ) {
    const shapes = vae.encoderBlockShapes();
    this.levels = options.levels ?? Object.keys(shapes);
    for (const level of this.levels) {
      const block = vae.encoder.down_blocks[Number(/^encoder\.down_blocks\.(\d+)$/.exec(level)?.[1] ?? NaN)];
      if (!block) throw new Error(`EncoderFeatureTaps: '${level}' is not a down block of this VAE encoder (${Object.keys(shapes).join(', ')})`);
      const record = (_: string, x: tf.Tensor, ctx: { outputs: Record<string, tf.Tensor> }) => {
        ctx.outputs[featureKey(level)] = x;
      };
      this.removers.push(
        block.downsamplers.length ? vae.addBlockHook(`${level}.downsamplers.0`, { preForward: record }) : vae.addBlockHook(level, { postForward: record }),
      );
    }
  }

  /** The tapped levels of one `vae.encode`'s outputs, coarsest first, with image strides. */
  pyramid(outputs: Record<string, tf.Tensor>): FeaturePyramid {
    const shapes = this.vae.encoderBlockShapes();
    return [...this.levels]
      .sort((a, b) => shapes[b].stride - shapes[a].stride)
      .map((level): FeatureMap => {
        const tensor = outputs[featureKey(level)];
        if (!tensor) throw new Error(`EncoderFeatureTaps: no '${level}' in these outputs; were they produced by vae.encode of the tapped VAE?`);
        return { tensor: tensor as tf.Tensor4D, stride: shapes[level].stride, name: level };
      });
  }

  /** Removes the hooks. */
  remove(): void {
    for (const r of this.removers.splice(0)) r();
  }
}
