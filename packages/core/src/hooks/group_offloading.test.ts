import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../backends/backend';
import { HostOffload } from './group_offloading';

describe.each(['cpu', 'wasm'] as const)('HostOffload on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('evicts and restores a weight under the same tensor, and refuses to evict storage another tensor shares', async () => {
    const w = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const offload = await HostOffload.create([w]);
    const buffers = tf.backend().numDataIds();
    offload.restore([w]);
    expect(tf.backend().numDataIds()).toBe(buffers + 1);
    expect([...(await w.data())]).toEqual([1, 2, 3, 4, 5, 6]);
    const view = tf.reshape(w, [3, 2]); // shares w's storage
    expect(() => offload.evict([w])).toThrow('HostOffload: cannot evict a [2,3] weight while 1 other tensor(s) share its storage');
    view.dispose();
    offload.evict([w]);
    expect(tf.backend().numDataIds()).toBe(buffers);
    offload.release();
    expect([...(await w.data())]).toEqual([1, 2, 3, 4, 5, 6]);
    w.dispose();
  });
});
