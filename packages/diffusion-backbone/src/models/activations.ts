import * as tf from '@tensorflow/tfjs-core';
import { Linear, gelu, geluTanh, type WeightScope } from '@png/core';

/** diffusers `GELU`: proj → gelu (its tanh approximation with approximate 'tanh'). */
export class GELU {
  readonly proj: Linear;

  constructor(
    scope: WeightScope,
    dimIn: number,
    dimOut: number,
    private readonly approximate: 'none' | 'tanh' = 'none',
  ) {
    this.proj = new Linear(scope.pp('proj'), dimIn, dimOut);
  }

  /** [..., dimIn] → [..., dimOut] */
  forward(x: tf.Tensor): tf.Tensor {
    const h = this.proj.forward(x);
    return this.approximate === 'tanh' ? geluTanh(h) : gelu(h);
  }
}

/** diffusers `GEGLU`: proj to twice the width, split into value and gate → value · gelu(gate). */
export class GEGLU {
  readonly proj: Linear;

  constructor(scope: WeightScope, dimIn: number, dimOut: number) {
    this.proj = new Linear(scope.pp('proj'), dimIn, 2 * dimOut);
  }

  /** [..., dimIn] → [..., dimOut] */
  forward(x: tf.Tensor): tf.Tensor {
    const [value, gate] = tf.split(this.proj.forward(x), 2, -1); // 2 × [..., dimOut]
    return tf.mul(value, gelu(gate));
  }
}
