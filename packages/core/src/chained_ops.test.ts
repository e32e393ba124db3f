import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from './backends/backend';
import './chained_ops';

// tfjs-core's Node bundle (the one jest and Node load) gives tensors no chained ops of its own.
it('tensors have tfjs’ chained ops once @png/core is loaded', async () => {
  await setBackend('cpu');
  const x = tf.tensor2d([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  const y = x.slice([0, 1], [2, 2]).reshape([4]).add(1);
  expect(await y.data()).toEqual(Float32Array.from([3, 4, 6, 7]));
  tf.dispose([x, y]);
});
