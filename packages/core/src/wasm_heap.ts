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
 * A float32 tensor of `shape` whose values `fill` writes into the array it is given. On wasm that
 * array is the tensor's own storage in the wasm heap, so e.g. a checkpoint's bytes are read
 * straight into it; `fill` must not run tfjs ops (a growing heap would move the array). Elsewhere
 * it is a new Float32Array handed to tf.tensor.
 */
export function tensorFilledBy(shape: number[], fill: (values: Float32Array) => void): tf.Tensor {
  if (tf.getBackend() !== 'wasm') {
    const values = new Float32Array(tf.util.sizeFromShape(shape));
    fill(values);
    return tf.tensor(values, shape, 'float32');
  }
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
