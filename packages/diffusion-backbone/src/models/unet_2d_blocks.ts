import * as tf from '@tensorflow/tfjs-core';
import type { ActivationName, ForwardContext, WeightScope } from '@png/core';
import { Attention } from './attention_processor';
import { Downsample2D } from './downsampling';
import { HookedModule, type ModelRuntime } from './model_runtime';
import { ResnetBlock2D } from './resnet';
import { Upsample2D } from './upsampling';

/** Options shared by every block of one model. */
export interface BlockCommon {
  readonly numLayers: number;
  readonly resnetEps: number;
  readonly resnetGroups: number;
  readonly act: ActivationName;
  /** Timestep-embedding width; undefined in the VAE. */
  readonly tembChannels?: number;
}

// ---------------------------------------------------------------------------------------------
// VAE blocks

/** diffusers `DownEncoderBlock2D`: resnets, then an optional asymmetric-pad stride-2 conv. */
export class DownEncoderBlock2D extends HookedModule {
  readonly resnets: ResnetBlock2D[] = [];
  readonly downsamplers: Downsample2D[] = [];

  constructor(
    scope: WeightScope,
    runtime: ModelRuntime,
    o: BlockCommon & { inChannels: number; outChannels: number; addDownsample: boolean; downsamplePadding: number },
  ) {
    super(scope, runtime);
    for (let i = 0; i < o.numLayers; i++) {
      this.resnets.push(
        new ResnetBlock2D(scope.pp('resnets').pp(i), runtime, {
          inChannels: i === 0 ? o.inChannels : o.outChannels,
          outChannels: o.outChannels,
          groups: o.resnetGroups,
          eps: o.resnetEps,
          act: o.act,
        }),
      );
    }
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
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Attention[] = [];

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon & { inChannels: number; attentionHeadDim: number; addAttention: boolean }) {
    super(scope, runtime);
    const resnet = (i: number) =>
      new ResnetBlock2D(scope.pp('resnets').pp(i), runtime, {
        inChannels: o.inChannels,
        outChannels: o.inChannels,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        act: o.act,
      });
    this.resnets.push(resnet(0));
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
      this.resnets.push(resnet(i + 1));
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
  readonly resnets: ResnetBlock2D[] = [];
  readonly upsamplers: Upsample2D[] = [];

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BlockCommon & { inChannels: number; outChannels: number; addUpsample: boolean }) {
    super(scope, runtime);
    for (let i = 0; i < o.numLayers; i++) {
      this.resnets.push(
        new ResnetBlock2D(scope.pp('resnets').pp(i), runtime, {
          inChannels: i === 0 ? o.inChannels : o.outChannels,
          outChannels: o.outChannels,
          groups: o.resnetGroups,
          eps: o.resnetEps,
          act: o.act,
        }),
      );
    }
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
