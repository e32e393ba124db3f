import * as tf from '@tensorflow/tfjs-core';
import {
  Conv2d,
  GroupNorm,
  HookedModule,
  hookedLeaf,
  seededNormal,
  silu,
  type ActivationName,
  type ForwardContext,
  type ModelRuntime,
  type WeightScope,
} from '@png/core';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from './unet_2d_blocks';

/** The GroupNorm epsilon of every VAE norm (resnets, mid-block attention, conv_norm_out). */
const VAE_NORM_EPS = 1e-6;

/** Down block types the VAE encoder builds (diffusers' `get_down_block` names). */
export type EncoderDownBlockType = 'DownEncoderBlock2D';
/** Up block types the VAE decoder builds (diffusers' `get_up_block` names). */
export type DecoderUpBlockType = 'UpDecoderBlock2D';

export interface EncoderOptions {
  readonly inChannels: number;
  /** Latent channels; the encoder outputs twice as many when `doubleZ` (mean and log-variance). */
  readonly outChannels: number;
  readonly downBlockTypes: readonly EncoderDownBlockType[];
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly normNumGroups: number;
  /** Activation of the resnets (conv_act before conv_out is always SiLU, as upstream). */
  readonly act: ActivationName;
  readonly doubleZ: boolean;
}

/**
 * diffusers `Encoder` (models/vae.py), NHWC: conv_in → DownEncoderBlock2D per level (a stride-2
 * conv after each but the last, padded (0,1,0,1)) → UNetMidBlock2D with one single-head attention
 * → GroupNorm → SiLU → conv_out. Every sub-module can be hooked by its path (`encoder.…`).
 */
export class Encoder extends HookedModule {
  readonly conv_in: Conv2d;
  readonly down_blocks: DownEncoderBlock2D[] = [];
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: EncoderOptions) {
    super(scope, runtime);
    const ch = o.blockOutChannels;
    const last = ch[ch.length - 1];
    const common = { resnetEps: VAE_NORM_EPS, resnetGroups: o.normNumGroups, act: o.act };
    this.conv_in = new Conv2d(scope.pp('conv_in'), o.inChannels, ch[0], 3, { padding: 1 });
    o.downBlockTypes.forEach((_, i) => {
      this.down_blocks.push(
        new DownEncoderBlock2D(scope.pp('down_blocks').pp(i), runtime, {
          ...common,
          numLayers: o.layersPerBlock,
          inChannels: i === 0 ? ch[0] : ch[i - 1],
          outChannels: ch[i],
          addDownsample: i < ch.length - 1,
          downsamplePadding: 0,
        }),
      );
    });
    this.mid_block = new UNetMidBlock2D(scope.pp('mid_block'), runtime, { ...common, numLayers: 1, inChannels: last, attentionHeadDim: last, addAttention: true });
    this.conv_norm_out = new GroupNorm(scope.pp('conv_norm_out'), o.normNumGroups, last, VAE_NORM_EPS);
    this.conv_out = new Conv2d(scope.pp('conv_out'), last, o.doubleZ ? 2 * o.outChannels : o.outChannels, 3, { padding: 1 });
  }

  /** [B, H, W, in] → [B, H/2^(L−1), W/2^(L−1), 2·latent] (L levels). Call inside tf.tidy. */
  forward(x: tf.Tensor4D, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (input) => {
      let h = hookedLeaf(this.runtime, `${this.path}.conv_in`, input, context, (t) => this.conv_in.forward(t));
      for (const block of this.down_blocks) h = block.forward(h, context);
      h = this.mid_block.forward(h, undefined, context);
      h = hookedLeaf(this.runtime, `${this.path}.conv_norm_out`, h, context, (t) => this.conv_norm_out.forward(t));
      return hookedLeaf(this.runtime, `${this.path}.conv_out`, silu(h) as tf.Tensor4D, context, (t) => this.conv_out.forward(t));
    });
  }
}

export interface DecoderOptions {
  /** Latent channels. */
  readonly inChannels: number;
  readonly outChannels: number;
  readonly upBlockTypes: readonly DecoderUpBlockType[];
  /** In encoder order; the decoder walks them in reverse. */
  readonly blockOutChannels: readonly number[];
  /** Each up block has layersPerBlock + 1 resnets, as upstream. */
  readonly layersPerBlock: number;
  readonly normNumGroups: number;
  /** Activation of the resnets (conv_act before conv_out is always SiLU, as upstream). */
  readonly act: ActivationName;
}

/**
 * diffusers `Decoder` (models/vae.py, norm_type 'group'), NHWC: conv_in → UNetMidBlock2D →
 * UpDecoderBlock2D per level from the deepest (nearest ×2 + conv after each but the last) →
 * GroupNorm → SiLU → conv_out.
 */
export class Decoder extends HookedModule {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: UpDecoderBlock2D[] = [];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: DecoderOptions) {
    super(scope, runtime);
    const rev = [...o.blockOutChannels].reverse();
    const common = { resnetEps: VAE_NORM_EPS, resnetGroups: o.normNumGroups, act: o.act };
    this.conv_in = new Conv2d(scope.pp('conv_in'), o.inChannels, rev[0], 3, { padding: 1 });
    this.mid_block = new UNetMidBlock2D(scope.pp('mid_block'), runtime, { ...common, numLayers: 1, inChannels: rev[0], attentionHeadDim: rev[0], addAttention: true });
    o.upBlockTypes.forEach((_, i) => {
      this.up_blocks.push(
        new UpDecoderBlock2D(scope.pp('up_blocks').pp(i), runtime, {
          ...common,
          numLayers: o.layersPerBlock + 1,
          inChannels: i === 0 ? rev[0] : rev[i - 1],
          outChannels: rev[i],
          addUpsample: i < rev.length - 1,
        }),
      );
    });
    const first = rev[rev.length - 1];
    this.conv_norm_out = new GroupNorm(scope.pp('conv_norm_out'), o.normNumGroups, first, VAE_NORM_EPS);
    this.conv_out = new Conv2d(scope.pp('conv_out'), first, o.outChannels, 3, { padding: 1 });
  }

  /** [B, h, w, latent] → [B, h·2^(L−1), w·2^(L−1), out] (L levels). Call inside tf.tidy. */
  forward(z: tf.Tensor4D, context: ForwardContext): tf.Tensor4D {
    return this.hooked(z, context, (input) => {
      let h = hookedLeaf(this.runtime, `${this.path}.conv_in`, input, context, (t) => this.conv_in.forward(t));
      h = this.mid_block.forward(h, undefined, context);
      for (const block of this.up_blocks) h = block.forward(h, context);
      h = hookedLeaf(this.runtime, `${this.path}.conv_norm_out`, h, context, (t) => this.conv_norm_out.forward(t));
      return hookedLeaf(this.runtime, `${this.path}.conv_out`, silu(h) as tf.Tensor4D, context, (t) => this.conv_out.forward(t));
    });
  }
}

/**
 * diffusers `DiagonalGaussianDistribution`: the VAE posterior N(mean, std²) from the encoder's
 * moments [B, h, w, 2C] (channels [0, C) are the mean, [C, 2C) the log-variance, clamped to
 * [-30, 20]). Construct it inside tf.tidy; its tensors belong to that scope.
 */
export class DiagonalGaussianDistribution {
  readonly mean: tf.Tensor4D; // [B, h, w, C]
  readonly logvar: tf.Tensor4D; // [B, h, w, C]
  readonly std: tf.Tensor4D; // [B, h, w, C]

  constructor(moments: tf.Tensor4D) {
    const [mean, logvar] = tf.split(moments, 2, 3) as [tf.Tensor4D, tf.Tensor4D]; // 2 × [B, h, w, C]
    this.mean = mean;
    this.logvar = tf.clipByValue(logvar, -30, 20);
    this.std = tf.exp(tf.mul(this.logvar, 0.5)) as tf.Tensor4D;
  }

  /**
   * mean + std·ε with ε ~ N(0, 1) drawn from `seed` (tfjs' generator: the numbers differ from
   * torch's for the same seed). The caller owns the result.
   */
  sample(seed?: number): tf.Tensor4D {
    return tf.tidy(() => tf.add(this.mean, tf.mul(this.std, seed === undefined ? tf.randomNormal(this.mean.shape) : seededNormal(this.mean.shape, seed))) as tf.Tensor4D);
  }
}
