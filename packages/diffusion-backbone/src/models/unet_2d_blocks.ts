import * as tf from '@tensorflow/tfjs-core';
import { HookedModule, type ActivationName, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';
import { Attention } from './attention_processor';
import type { FeedForwardActivation } from './attention';
import { Downsample2D } from './downsampling';
import { ResnetBlock2D } from './resnet';
import { Transformer2DModel } from './transformer_2d';
import { Upsample2D } from './upsampling';

/** Options shared by every block of one model. */
export interface BlockCommon {
  readonly numLayers: number;
  readonly resnetEps: number;
  readonly resnetGroups: number;
  readonly act: ActivationName;
  /** Timestep-embedding width; undefined in the VAE. */
  readonly tembChannels?: number;
  /** Resnet outputs are divided by this (diffusers' `output_scale_factor`; 1 by default). */
  readonly outputScaleFactor?: number;
}

/** Options of the cross-attention (Transformer2DModel) part of a UNet block. */
export interface CrossAttnCommon {
  readonly heads: number;
  readonly crossAttentionDim: number;
  readonly transformerLayers: number;
  readonly useLinearProjection: boolean;
  readonly onlyCrossAttention: boolean;
  readonly activationFn?: FeedForwardActivation;
}

/** What the cross-attention blocks pass down to their transformers. */
export interface CrossAttnArgs {
  readonly encoderHiddenStates: tf.Tensor3D;
  readonly encoderAttentionMask?: tf.Tensor2D;
  readonly context: ForwardContext;
}

/**
 * A UNet down, mid or up block. Its forward runs through `hookedBlock` with every tensor it reads
 * as an input, [x, ...skips, temb, encoderHiddenStates, encoderAttentionMask?], so that gradient
 * checkpointing can run it again.
 */
abstract class UNetBlock extends HookedModule {
  protected hookedUNetBlock(
    x: tf.Tensor4D,
    skips: readonly tf.Tensor4D[],
    temb: tf.Tensor2D,
    args: CrossAttnArgs,
    compute: (x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, args: CrossAttnArgs) => tf.Tensor4D[],
  ): tf.Tensor4D[] {
    const n = skips.length;
    const mask = args.encoderAttentionMask ? [args.encoderAttentionMask] : [];
    return this.hookedBlock([x, ...skips, temb, args.encoderHiddenStates, ...mask], args.context, (inputs) => {
      const [h, ...rest] = inputs as tf.Tensor4D[];
      const [t, encoderHiddenStates, encoderAttentionMask] = rest.slice(n) as tf.Tensor[];
      return compute(h, rest.slice(0, n), t as tf.Tensor2D, {
        encoderHiddenStates: encoderHiddenStates as tf.Tensor3D,
        encoderAttentionMask: encoderAttentionMask as tf.Tensor2D | undefined,
        context: args.context,
      });
    }) as tf.Tensor4D[];
  }
}

function transformer(scope: WeightScope, runtime: ModelRuntime, channels: number, o: BlockCommon & CrossAttnCommon): Transformer2DModel {
  return new Transformer2DModel(scope, runtime, {
    heads: o.heads,
    dimHead: channels / o.heads,
    inChannels: channels,
    numLayers: o.transformerLayers,
    crossAttentionDim: o.crossAttentionDim,
    normNumGroups: o.resnetGroups,
    useLinearProjection: o.useLinearProjection,
    onlyCrossAttention: o.onlyCrossAttention,
    activationFn: o.activationFn,
  });
}

function resnets(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon, inOf: (i: number) => number, out: number): ResnetBlock2D[] {
  return Array.from(
    { length: o.numLayers },
    (_, i) =>
      new ResnetBlock2D(scope.pp('resnets').pp(i), runtime, {
        inChannels: inOf(i),
        outChannels: out,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        act: o.act,
        outputScaleFactor: o.outputScaleFactor,
      }),
  );
}

// ---------------------------------------------------------------------------------------------
// UNet blocks

/** A UNet down block's result: the hidden state and the skip tensors it adds to the stack. */
export interface DownBlockOutput {
  readonly hidden: tf.Tensor4D;
  readonly resSamples: tf.Tensor4D[];
}

/**
 * diffusers `DownBlock2D` and `CrossAttnDownBlock2D` (the latter when `crossAttn` is given):
 * (resnet → transformer?) × layers, each output a skip tensor, then an optional stride-2 conv.
 */
export class DownBlock2D extends UNetBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] = [];
  readonly downsamplers: Downsample2D[] = [];

  constructor(
    scope: WeightScope,
    runtime: ModelRuntime,
    o: BlockCommon & { inChannels: number; outChannels: number; addDownsample: boolean; downsamplePadding: number; crossAttn?: CrossAttnCommon },
  ) {
    super(scope, runtime);
    this.resnets = resnets(scope, runtime, o, (i) => (i === 0 ? o.inChannels : o.outChannels), o.outChannels);
    if (o.crossAttn) {
      for (let i = 0; i < o.numLayers; i++) this.attentions.push(transformer(scope.pp('attentions').pp(i), runtime, o.outChannels, { ...o, ...o.crossAttn }));
    }
    if (o.addDownsample) this.downsamplers.push(new Downsample2D(scope.pp('downsamplers').pp(0), runtime, o.outChannels, o.outChannels, o.downsamplePadding));
  }

  get hasCrossAttention(): boolean {
    return this.attentions.length > 0;
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, args: CrossAttnArgs): DownBlockOutput {
    const [hidden, ...resSamples] = this.hookedUNetBlock(x, [], temb, args, (h, _, temb, args) => {
      const resSamples: tf.Tensor4D[] = [];
      this.resnets.forEach((resnet, i) => {
        h = resnet.forward(h, temb, args.context);
        if (this.attentions[i]) h = this.attentions[i].forward(h, args);
        resSamples.push(h);
      });
      for (const down of this.downsamplers) {
        h = down.forward(h, args.context);
        resSamples.push(h);
      }
      return [h, ...resSamples];
    });
    return { hidden, resSamples };
  }
}

/** diffusers `UNetMidBlock2DCrossAttn`: resnet, then (transformer → resnet) × layers. */
export class UNetMidBlock2DCrossAttn extends UNetBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] = [];

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon & CrossAttnCommon & { inChannels: number }) {
    super(scope, runtime);
    this.resnets = resnets(scope, runtime, { ...o, numLayers: o.numLayers + 1 }, () => o.inChannels, o.inChannels);
    for (let i = 0; i < o.numLayers; i++) this.attentions.push(transformer(scope.pp('attentions').pp(i), runtime, o.inChannels, o));
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, args: CrossAttnArgs): tf.Tensor4D {
    const [out] = this.hookedUNetBlock(x, [], temb, args, (input, _, temb, args) => {
      let h = this.resnets[0].forward(input, temb, args.context);
      this.attentions.forEach((attn, i) => {
        h = attn.forward(h, args);
        h = this.resnets[i + 1].forward(h, temb, args.context);
      });
      return [h];
    });
    return out;
  }
}

/**
 * diffusers `UpBlock2D` and `CrossAttnUpBlock2D` (with `crossAttn`): (concat the next skip tensor
 * → resnet → transformer?) × layers, then an optional nearest ×2 + conv.
 */
export class UpBlock2D extends UNetBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] = [];
  readonly upsamplers: Upsample2D[] = [];

  constructor(
    scope: WeightScope,
    runtime: ModelRuntime,
    o: BlockCommon & { inChannels: number; prevOutputChannels: number; outChannels: number; addUpsample: boolean; crossAttn?: CrossAttnCommon },
  ) {
    super(scope, runtime);
    const skip = (i: number) => (i === o.numLayers - 1 ? o.inChannels : o.outChannels);
    this.resnets = resnets(scope, runtime, o, (i) => (i === 0 ? o.prevOutputChannels : o.outChannels) + skip(i), o.outChannels);
    if (o.crossAttn) {
      for (let i = 0; i < o.numLayers; i++) this.attentions.push(transformer(scope.pp('attentions').pp(i), runtime, o.outChannels, { ...o, ...o.crossAttn }));
    }
    if (o.addUpsample) this.upsamplers.push(new Upsample2D(scope.pp('upsamplers').pp(0), runtime, o.outChannels, o.outChannels));
  }

  get hasCrossAttention(): boolean {
    return this.attentions.length > 0;
  }

  /** `skips` (one per resnet) are consumed from the end. */
  forward(x: tf.Tensor4D, skips: readonly tf.Tensor4D[], temb: tf.Tensor2D, args: CrossAttnArgs): tf.Tensor4D {
    const [out] = this.hookedUNetBlock(x, skips, temb, args, (h, skips, temb, args) => {
      this.resnets.forEach((resnet, i) => {
        const skip = skips[skips.length - 1 - i];
        h = resnet.forward(tf.concat([h, skip], 3) as tf.Tensor4D, temb, args.context); // [B, H, W, C + Cskip]
        if (this.attentions[i]) h = this.attentions[i].forward(h, args);
      });
      for (const up of this.upsamplers) h = up.forward(h, args.context);
      return [h];
    });
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// VAE blocks

/** diffusers `DownEncoderBlock2D`: resnets, then an optional asymmetric-pad stride-2 conv. */
export class DownEncoderBlock2D extends HookedModule {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers: Downsample2D[] = [];

  constructor(
    scope: WeightScope,
    runtime: ModelRuntime,
    o: BlockCommon & { inChannels: number; outChannels: number; addDownsample: boolean; downsamplePadding: number },
  ) {
    super(scope, runtime);
    this.resnets = resnets(scope, runtime, o, (i) => (i === 0 ? o.inChannels : o.outChannels), o.outChannels);
    if (o.addDownsample) this.downsamplers.push(new Downsample2D(scope.pp('downsamplers').pp(0), runtime, o.outChannels, o.outChannels, o.downsamplePadding));
  }

  forward(x: tf.Tensor4D, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (h) => {
      for (const resnet of this.resnets) h = resnet.forward(h, undefined, context);
      for (const down of this.downsamplers) h = down.forward(h, context);
      return h;
    });
  }
}

/** diffusers `UNetMidBlock2D` (the VAE's): resnet, then (single-head, group-normed attention, resnet) × layers. */
export class UNetMidBlock2D extends HookedModule {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Attention[] = [];

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon & { inChannels: number; attentionHeadDim: number; addAttention: boolean }) {
    super(scope, runtime);
    this.resnets = resnets(scope, runtime, { ...o, numLayers: o.numLayers + 1 }, () => o.inChannels, o.inChannels);
    for (let i = 0; i < o.numLayers; i++) {
      if (o.addAttention) {
        this.attentions.push(
          new Attention(scope.pp('attentions').pp(i), runtime, {
            queryDim: o.inChannels,
            heads: o.inChannels / o.attentionHeadDim,
            dimHead: o.attentionHeadDim,
            bias: true,
            groupNorm: { groups: o.resnetGroups, eps: o.resnetEps },
            residualConnection: true,
          }),
        );
      }
    }
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D | undefined, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (input) => {
      let h = this.resnets[0].forward(input, temb, context);
      for (let i = 1; i < this.resnets.length; i++) {
        if (this.attentions[i - 1]) h = this.attentions[i - 1].forward(h, { context });
        h = this.resnets[i].forward(h, temb, context);
      }
      return h;
    });
  }
}

/** diffusers `UpDecoderBlock2D`: resnets, then an optional nearest ×2 + conv. */
export class UpDecoderBlock2D extends HookedModule {
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers: Upsample2D[] = [];

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon & { inChannels: number; outChannels: number; addUpsample: boolean }) {
    super(scope, runtime);
    this.resnets = resnets(scope, runtime, o, (i) => (i === 0 ? o.inChannels : o.outChannels), o.outChannels);
    if (o.addUpsample) this.upsamplers.push(new Upsample2D(scope.pp('upsamplers').pp(0), runtime, o.outChannels, o.outChannels));
  }

  forward(x: tf.Tensor4D, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (h) => {
      for (const resnet of this.resnets) h = resnet.forward(h, undefined, context);
      for (const up of this.upsamplers) h = up.forward(h, context);
      return h;
    });
  }
}
