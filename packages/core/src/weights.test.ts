import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from './backend';
import { Linear } from './nn/linear';
import { WeightScope } from './weights';

describe('WeightScope', () => {
  beforeAll(() => setBackend('cpu'));

  it('names trainable variables after their parameter keys, so gradients are keyed by them', () => {
    const build = () => WeightScope.fresh({ seed: 0 }).build((s) => new Linear(s.pp('proj'), 3, 2));
    const one = build();
    const two = build(); // the same keys while the first lives
    expect(one.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight', 'proj.bias']);
    expect(two.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight#2', 'proj.bias#2']);
    const { value, grads } = tf.variableGrads(() => tf.sum(one.module.forward(tf.ones([1, 3]))));
    expect(Object.keys(grads).sort()).toEqual(['proj.bias', 'proj.weight']);
    tf.dispose([value, grads]);
    one.params.dispose();
    two.params.dispose();
    const three = build(); // the names are free again
    expect(three.params.trainableVariables().map((v) => v.name)).toEqual(['proj.weight', 'proj.bias']);
    three.params.dispose();
  });
});
