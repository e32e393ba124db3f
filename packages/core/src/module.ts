import type * as tf from '@tensorflow/tfjs-core';
import type { Disposable } from './types';
import type { Parameters } from './weights';

/**
 * Base of every module that owns its parameters (made by `WeightScope.build`): `parameters`,
 * `trainableVariables()`, `numParameters()`, `dispose()`, and a clear error on use after dispose.
 */
export abstract class ParameterModule implements Disposable {
  private owned?: Parameters;

  /** Takes ownership of the parameters built for this module (once, right after construction). */
  protected adopt(params: Parameters): this {
    if (this.owned) throw new Error(`${this.constructor.name}: parameters were already adopted`);
    this.owned = params;
    return this;
  }

  /** Every weight by checkpoint key (frozen tf.Tensor or trainable tf.Variable). */
  get parameters(): Parameters {
    return this.assertAlive();
  }

  /** The trainable variables, for an optimizer's var list ([] for a frozen module). */
  trainableVariables(): tf.Variable[] {
    return this.parameters.trainableVariables();
  }

  numParameters(): number {
    return this.parameters.numElements();
  }

  /** Frees every weight; the module cannot be used afterwards. */
  dispose(): void {
    this.owned?.dispose();
  }

  /** The module's parameters; throws once it has been disposed. */
  protected assertAlive(): Parameters {
    if (!this.owned || this.owned.isDisposed) throw new Error(`${this.constructor.name} was disposed; create or load it again`);
    return this.owned;
  }
}
