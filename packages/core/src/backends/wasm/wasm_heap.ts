import * as tf from '@tensorflow/tfjs-core';

/** The part of tfjs-backend-wasm's BackendWasm that @png/core uses. */
export interface WasmBackend {
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  incRef(dataId: tf.DataId): void;
  readSync(dataId: tf.DataId): unknown;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * A float32 tensor of `shape` whose values `fill` writes straight into its own storage in the wasm
 * heap (so a checkpoint's bytes are read in place, never held twice); `fill` must not run tfjs ops
 * (a growing heap would move the array). The wasm strategy's `tensorFilledBy`.
 */
export function heapTensorFilledBy(shape: number[], fill: (values: Float32Array) => void): tf.Tensor {
  const backend = tf.backend() as unknown as WasmBackend;
  const info = backend.makeOutput(shape, 'float32');
  try {
    fill(backend.typedArrayFromHeap(info) as Float32Array);
  } catch (e) {
    backend.disposeData(info.dataId);
    throw e;
  }
  return tf.engine().makeTensorFromTensorInfo(info);
}
