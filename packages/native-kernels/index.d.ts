/** Convolution geometry in tfjs' terms: NHWC shapes, HWIO filters, pads [top, bottom, left, right]. */
export interface ConvGeometry {
  xShape: number[];
  filterShape: number[];
  yShape: number[];
  strides: [number, number];
  dilations: [number, number];
  pads: [number, number, number, number];
  /** Names an immutable filter: its reordered copy is kept and reused (conv2d, conv2dBackpropInput); absent: reordered on every call. */
  filterKey?: number;
}

/** The addon: each call reads and writes the given Float32Arrays in place (e.g. views of the wasm heap). */
export interface NativeKernels {
  /** y = conv2d(x, filter). */
  conv2d(args: ConvGeometry & { x: Float32Array; filter: Float32Array; y: Float32Array }): void;
  /** dx = conv2d's gradient with respect to x. */
  conv2dBackpropInput(args: ConvGeometry & { dy: Float32Array; filter: Float32Array; dx: Float32Array }): void;
  /** dfilter = conv2d's gradient with respect to the filter. */
  conv2dBackpropFilter(args: ConvGeometry & { x: Float32Array; dy: Float32Array; dfilter: Float32Array }): void;
  /** c [G, M, N] = a · b, a [Ga, M, K] (stored [Ga, K, M] if transposeA), b [Gb, K, N] (stored [Gb, N, K] if transposeB); dims [Ga, Gb, M, K, N], Ga and Gb equal or 1. */
  matmul(args: { a: Float32Array; b: Float32Array; c: Float32Array; dims: number[]; transposeA: boolean; transposeB: boolean }): void;
  /** oneDNN's version, e.g. '2.6.3'. */
  version(): string;
  /** The threads oneDNN computes on (OpenMP's: all cores, or OMP_NUM_THREADS). */
  threads(): number;
  /** A filter key no other caller in this process has had (the cache is per process). */
  newFilterKey(): number;
  /** Drops the reordered filter copies kept under `key`. */
  releaseFilter(key: number): void;
  /** Sets the reordered-filter budget when `limitBytes` is given (least recently used out first; 0 keeps none; default 1 GiB); returns the cache's state. */
  filterCache(options?: { limitBytes?: number }): { entries: number; bytes: number; limitBytes: number };
}

/** The addon, or null when it was not built or does not load. */
export const kernels: NativeKernels | null;
/** Why `kernels` is null (and how to build it), or null. */
export const unavailable: string | null;
