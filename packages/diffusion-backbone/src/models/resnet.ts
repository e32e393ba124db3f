import * as tf from '@tensorflow/tfjs-core';
import { Conv2d, GroupNorm, HookedModule, Linear, activation, type ActivationName, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';

export interface ResnetBlock2DOptions {
  readonly inChannels: number;
  readonly outChannels: number;
  /** Width of the timestep embedding; undefined for the VAE (no `time_emb_proj`). */
  readonly tembChannels?: number;
  readonly groups: number;
  readonly eps: number;
  readonly act: ActivationName;
  readonly outputScaleFactor?: number;
}

/** diffusers `ResnetBlock2D` (time_embedding_norm 'default'), NHWC. */
export class ResnetBlock2D extends HookedModule {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj?: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private readonly outputScaleFactor: number;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: ResnetBlock2DOptions) {
    super(scope, runtime);
    this.norm1 = new GroupNorm(scope.pp('norm1'), o.groups, o.inChannels, o.eps);
    this.conv1 = new Conv2d(scope.pp('conv1'), o.inChannels, o.outChannels, 3, { padding: 1 });
    if (o.tembChannels !== undefined) this.time_emb_proj = new Linear(scope.pp('time_emb_proj'), o.tembChannels, o.outChannels);
    this.norm2 = new GroupNorm(scope.pp('norm2'), o.groups, o.outChannels, o.eps);
    this.conv2 = new Conv2d(scope.pp('conv2'), o.outChannels, o.outChannels, 3, { padding: 1 });
    if (o.inChannels !== o.outChannels) this.conv_shortcut = new Conv2d(scope.pp('conv_shortcut'), o.inChannels, o.outChannels, 1);
    this.act = activation(o.act);
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
  }

  /** x [B, H, W, Cin], temb [B, T] → [B, H, W, Cout] */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D | undefined, context: ForwardContext): tf.Tensor4D {
    return this.hooked(x, context, (input) => {
      let h = this.conv1.forward(this.act(this.norm1.forward(input)) as tf.Tensor4D);
      if (this.time_emb_proj && temb) {
        const t = this.time_emb_proj.forward(this.act(temb)) as tf.Tensor2D; // [B, Cout]
        h = tf.add(h, tf.reshape(t, [t.shape[0], 1, 1, t.shape[1]])); // [B, 1, 1, Cout]
      }
      h = this.conv2.forward(this.act(this.norm2.forward(h)) as tf.Tensor4D);
      const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(input) : input;
      const out = tf.add(shortcut, h) as tf.Tensor4D;
      return this.outputScaleFactor === 1 ? out : (tf.div(out, this.outputScaleFactor) as tf.Tensor4D);
    });
  }
}
