import * as tf from '@tensorflow/tfjs-core';
import type { Parameters } from '../weights';
import { sharedRuntime, type HookedModule } from './hooked_module';

interface BackendStorage {
  disposeData(dataId: object, force?: boolean): boolean;
  move(dataId: object, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void;
  refCount(dataId: object): number;
}

/** Backends whose kernels finish synchronously, so a weight can be evicted right after its block ran. */
const SYNC_BACKENDS = ['wasm', 'cpu'];

/**
 * Keeps frozen weights in host memory and uploads them to the backend only while they are
 * needed (cf. diffusers' `enable_sequential_cpu_offload`). The tensors stay the same objects: only
 * their backend storage is released and restored under the same data id, so a model holding them
 * needs no change. On wasm this also drops any packed copy XNNPACK made of a weight; it is what
 * lets SD v1.5's 3.4 GB UNet run within wasm32's 4 GiB heap.
 *
 * A gradient tape that still references an evicted weight cannot run: to train through offloaded
 * weights, recompute each block in the backward with its weights restored (applyGroupOffloading
 * with applyGradientCheckpointing does so).
 */
export class HostOffload {
  private readonly host = new Map<tf.Tensor, { values: tf.backend_util.BackendValues; refCount: number }>();
  private readonly backend: BackendStorage;

  private constructor(readonly backendName: string) {
    this.backend = tf.backend() as unknown as BackendStorage;
  }

  /** Copies `tensors` to host memory and evicts them from the current backend (wasm or cpu). */
  static async create(tensors: Iterable<tf.Tensor>): Promise<HostOffload> {
    const name = tf.getBackend();
    if (!SYNC_BACKENDS.includes(name))
      throw new Error(`HostOffload: the '${name}' backend runs kernels asynchronously; offloading needs ${SYNC_BACKENDS.join(' or ')}`);
    const offload = new HostOffload(name);
    for (const t of tensors) {
      if (t instanceof tf.Variable) throw new Error(`HostOffload: '${t.name}' is a trainable variable; only frozen weights can be offloaded`);
      offload.host.set(t, { values: (await t.data()) as tf.backend_util.BackendValues, refCount: offload.backend.refCount(t.dataId) });
      offload.evict([t]);
    }
    return offload;
  }

  /** Uploads `tensors` (those this offload holds) back to the backend. */
  restore(tensors: Iterable<tf.Tensor>): void {
    this.assertBackend();
    for (const t of tensors) {
      const h = this.host.get(t);
      if (h && this.backend.refCount(t.dataId) === 0) this.backend.move(t.dataId, h.values, t.shape, t.dtype, h.refCount);
    }
  }

  /**
   * Releases the backend storage of `tensors` (their host copies stay). A tensor whose storage is
   * shared by more references than when it was offloaded (a reshape of it, a copy the gradient
   * tape saved) cannot be evicted: that would free the storage under them.
   */
  evict(tensors: Iterable<tf.Tensor>): void {
    this.assertBackend();
    for (const t of tensors) {
      const h = this.host.get(t);
      const refs = this.backend.refCount(t.dataId);
      if (!h || refs === 0) continue;
      if (refs > h.refCount) {
        throw new Error(
          `HostOffload: cannot evict a [${t.shape}] weight while ${refs - h.refCount} other tensor(s) share its storage (a reshape of it or a copy saved for a gradient); dispose them first`,
        );
      }
      this.backend.disposeData(t.dataId, true);
    }
  }

  /** Restores everything and forgets the host copies. */
  release(): void {
    this.restore(this.host.keys());
    this.host.clear();
  }

  private assertBackend(): void {
    if (tf.getBackend() !== this.backendName) throw new Error(`HostOffload: created on '${this.backendName}', but the backend is now '${tf.getBackend()}'`);
  }
}

/**
 * Sequential offload of `blocks` (cf. diffusers' `apply_group_offloading` at block level): the
 * weights under each block's path (the `<path>.…` keys of `parameters`, with their load-time
 * layouts) stay in host memory
 * (`HostOffload`) and are uploaded while the block runs. Outputs are bit-identical. Under gradient
 * checkpointing (`applyGradientCheckpointing`) a block's weights are uploaded again while its
 * gradient is computed, and stay until it is. Returns the function that turns offloading off
 * again (every weight uploaded).
 */
export async function applyGroupOffloading(blocks: readonly HookedModule[], parameters: Parameters): Promise<() => void> {
  const { hooks } = sharedRuntime(blocks, 'applyGroupOffloading');
  const keys = parameters.keys();
  const tensorsOf = (key: string): tf.Tensor[] => {
    const layout = parameters.layoutOf(key); // a backend's load-time copy leaves with the weight
    return layout ? [parameters.get(key), layout] : [parameters.get(key)];
  };
  const groups = new Map(blocks.map((block) => [block.path, keys.filter((key) => key.startsWith(`${block.path}.`)).flatMap(tensorsOf)]));
  const groupOf = (path: string): tf.Tensor[] => {
    const group = groups.get(path);
    if (!group) throw new Error(`group offloading: '${path}' is not an offloaded block (${[...groups.keys()].join(', ')})`);
    return group;
  };
  const offload = await HostOffload.create([...groups.values()].flat());
  const pinned = new Set<string>(); // blocks whose gradient is being computed
  const remove = hooks.add((path) => groups.has(path), {
    preForward: (path) => offload.restore(groupOf(path)),
    postForward: (path) => {
      if (!pinned.has(path)) offload.evict(groupOf(path));
    },
    aroundBackward: (path, backward) => {
      pinned.add(path);
      try {
        backward();
      } finally {
        pinned.delete(path);
        offload.evict(groupOf(path));
      }
    },
  });
  return () => {
    remove();
    offload.release();
  };
}
