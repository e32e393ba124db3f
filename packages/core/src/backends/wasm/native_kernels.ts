import * as tf from '@tensorflow/tfjs-core';
import { importUnbundled } from '../../node_only';
import type { WasmBackend } from './wasm_heap';

/**
 * The optional native compute path of the wasm backend in Node: `@png/native-kernels`, a small
 * addon over oneDNN built at install where the machine has a compiler, Node's headers and oneDNN
 * (Debian's libdnnl-dev). Where it loads, its kernels replace the wasm backend's `Conv2D`,
 * `Conv2DBackpropInput`, `Conv2DBackpropFilter` and `BatchMatMul`: they read their inputs and write
 * their outputs in place in the wasm heap (no copies) on all cores. Cases they do not handle (NCHW,
 * non-float32, tfjs' numeric pads with unequal strides, batch shapes that broadcast otherwise than
 * "equal or 1") run the kernel they replaced.
 *
 * Opt-in: `PNG_NATIVE=1` loads it (an error says why when it is absent); unset or `0` keeps the
 * wasm kernels, until the native path is measured faster on the models here. Browsers never reach
 * it (an unbundled import, in Node only).
 *
 * Filters: oneDNN computes on its own blocked filter layout. Each conv passes its filter's key
 * (one per tensor data: tfjs data never changes in place), so the addon reorders a frozen weight
 * once and keeps the copy (least recently used out beyond `PNG_NATIVE_FILTER_CACHE_MB`, default
 * 1024; 0 reorders on every call); a key is released when its data is garbage-collected.
 */

/** What @png/core uses of `@png/native-kernels` (its index.d.ts). */
interface NativeKernels {
  conv2d(args: ConvGeometry & { x: Float32Array; filter: Float32Array; y: Float32Array }): void;
  conv2dBackpropInput(args: ConvGeometry & { dy: Float32Array; filter: Float32Array; dx: Float32Array }): void;
  conv2dBackpropFilter(args: ConvGeometry & { x: Float32Array; dy: Float32Array; dfilter: Float32Array }): void;
  matmul(args: { a: Float32Array; b: Float32Array; c: Float32Array; dims: number[]; transposeA: boolean; transposeB: boolean }): void;
  version(): string;
  threads(): number;
  newFilterKey(): number;
  releaseFilter(key: number): void;
  filterCache(options?: { limitBytes?: number }): { entries: number; bytes: number; limitBytes: number };
}
interface ConvGeometry {
  xShape: number[];
  filterShape: number[];
  yShape: number[];
  strides: [number, number];
  dilations: [number, number];
  pads: [number, number, number, number];
  /** Names the filter's data for the addon's reordered-filter cache (see the file's comment). */
  filterKey?: number;
}

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown };
type Kernel = (args: KernelArgs) => Info;

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/** The addon once loaded (or why not), for the whole process. */
let loaded: Promise<{ kernels: NativeKernels } | { unavailable: string }> | undefined;

/** The compute path the wasm backend took: set by `useNativeKernels`. */
let path: string | undefined;

/** One line saying how the wasm backend computes (native kernels or not, and why); undefined before setBackend('wasm'). */
export function wasmComputePath(): string | undefined {
  return path;
}

/** The addon's reordered-filter cache: entries, bytes and budget; undefined unless the native kernels are in use. */
export function nativeFilterCache(): { entries: number; bytes: number; limitBytes: number } | undefined {
  return active?.filterCache();
}

/** The loaded addon while its kernels are registered. */
let active: NativeKernels | undefined;

/**
 * One key per tensor data (dataId objects are never reused), from the addon (its cache is per
 * process, and this module may be loaded more than once in it), released in the addon when the
 * data is collected.
 */
const filterKeys = new WeakMap<object, number>();
const collected = new FinalizationRegistry<number>((key) => active?.releaseFilter(key));

function filterKey(native: NativeKernels, t: Info): number {
  const id = t.dataId as object;
  let key = filterKeys.get(id);
  if (key === undefined) {
    key = native.newFilterKey();
    filterKeys.set(id, key);
    collected.register(id, key);
  }
  return key;
}

/** PNG_NATIVE_FILTER_CACHE_MB as bytes (default 1024 MB). */
function filterCacheBytes(): number {
  const mb = process.env.PNG_NATIVE_FILTER_CACHE_MB ?? '1024';
  const n = Number(mb);
  if (mb.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new Error(`PNG_NATIVE_FILTER_CACHE_MB='${mb}': expected a number of megabytes ≥ 0 (0: reorder every filter on every call)`);
  return Math.round(n * 2 ** 20);
}

/** Whether the native kernels are registered on the wasm backend. */
export function nativeKernelsActive(): boolean {
  return path?.startsWith('native') ?? false;
}

async function load(): Promise<{ kernels: NativeKernels } | { unavailable: string }> {
  const choice = isNode ? process.env.PNG_NATIVE : '0';
  if (choice !== undefined && choice !== '0' && choice !== '1')
    throw new Error(`PNG_NATIVE='${choice}': expected 0 or unset (wasm kernels) or 1 (native kernels)`);
  if (!isNode) return { unavailable: 'not in Node' };
  if (choice === '0') return { unavailable: 'PNG_NATIVE=0' };
  if (choice === undefined) return { unavailable: 'opt-in, PNG_NATIVE=1 uses them' };
  let found: { kernels: NativeKernels | null; unavailable: string | null };
  try {
    found = await importUnbundled('@png/native-kernels');
  } catch (e) {
    found = { kernels: null, unavailable: `@png/native-kernels is not installed (${e instanceof Error ? e.message.split('\n')[0] : e})` };
  }
  if (found.kernels) return { kernels: found.kernels };
  const why = found.unavailable ?? '@png/native-kernels exports no kernels';
  if (choice === '1') throw new Error(`PNG_NATIVE=1 but the native kernels are unavailable: ${why}`);
  return { unavailable: why };
}

/**
 * Loads `@png/native-kernels` (once) and registers its kernels on the wasm backend, over the
 * current ones (call after registerWasmTrainingKernels); `wasmThreads`: the wasm backend's XNNPACK
 * threads, for the line. Returns the compute path, one line.
 */
export async function useNativeKernels(wasmThreads: number): Promise<string> {
  loaded ??= load();
  let found: Awaited<typeof loaded>;
  try {
    found = await loaded;
  } catch (e) {
    loaded = undefined; // PNG_NATIVE may be fixed before the next call
    throw e;
  }
  if ('unavailable' in found) {
    path = `wasm kernels (XNNPACK, ${wasmThreads} thread${wasmThreads === 1 ? '' : 's'}): native kernels not used: ${found.unavailable}`;
    return path;
  }
  const native = found.kernels;
  native.filterCache({ limitBytes: filterCacheBytes() });
  active = native;
  for (const [kernelName, make] of Object.entries(NATIVE)) {
    const current = tf.getKernel(kernelName, 'wasm');
    if (!current) throw new Error(`native kernels: the wasm backend has no '${kernelName}' kernel to replace; call setBackend('wasm') first`);
    if ((current as { native?: boolean }).native) continue; // registered already
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({
      kernelName,
      backendName: 'wasm',
      kernelFunc: make(native, current.kernelFunc as unknown as Kernel) as unknown as tf.KernelFunc,
      setupFunc: current.setupFunc,
      disposeFunc: current.disposeFunc,
      native: true,
    } as tf.KernelConfig);
  }
  path = `native kernels (oneDNN ${native.version()}, ${native.threads()} threads: ${Object.keys(NATIVE).join(', ')}) on the wasm backend`;
  return path;
}

/** A new float32 output of `shape` that `fill` writes through heap views (taken after the allocation); released if `fill` throws. */
function output(backend: WasmBackend, shape: number[], fill: (out: Float32Array, view: (t: Info) => Float32Array) => void): Info {
  const out = backend.makeOutput(shape, 'float32');
  try {
    const view = (t: Info) => backend.typedArrayFromHeap(t) as Float32Array;
    fill(view(out), view);
  } catch (e) {
    backend.disposeData(out.dataId);
    throw e;
  }
  return out;
}

type Pad = Parameters<typeof tf.backend_util.computeConv2DInfo>[4];

/** The addon's geometry for a conv of x [B, H, W, Ci] with filter [KH, KW, Ci, Co] (tfjs' padding rules), or undefined where oneDNN cannot take it. */
function geometry(
  xShape: number[],
  filterShape: number[],
  strides: number | [number, number],
  dilations: number | [number, number],
  pad: unknown,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): ConvGeometry | undefined {
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    dilations,
    pad as Pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const { top, bottom, left, right } = info.padInfo;
  // tfjs sizes both axes of a numeric pad with the height's stride; oneDNN takes only geometries
  // whose output size follows from the input, filter, stride and pads
  const consistent = (n: number, k: number, d: number, s: number, before: number, after: number, out: number) =>
    Math.floor((n + before + after - (k - 1) * d - 1) / s) + 1 === out;
  if (
    !consistent(xShape[1], filterShape[0], info.dilationHeight, info.strideHeight, top, bottom, info.outHeight) ||
    !consistent(xShape[2], filterShape[1], info.dilationWidth, info.strideWidth, left, right, info.outWidth)
  )
    return undefined;
  return {
    xShape,
    filterShape,
    yShape: info.outShape,
    strides: [info.strideHeight, info.strideWidth],
    dilations: [info.dilationHeight, info.dilationWidth],
    pads: [top, bottom, left, right],
  };
}

const float32 = (...ts: Info[]) => ts.every((t) => t.dtype === 'float32');

const NATIVE: Record<string, (native: NativeKernels, fallback: Kernel) => Kernel> = {
  [tf.Conv2D]: (native, fallback) => (args) => {
    const { x, filter } = args.inputs as { x: Info; filter: Info };
    const { strides, pad, dataFormat, dilations, dimRoundingMode } = args.attrs as unknown as tf.Conv2DAttrs;
    const g = dataFormat !== 'NCHW' && float32(x, filter) ? geometry(x.shape, filter.shape, strides, dilations, pad, dimRoundingMode) : undefined;
    if (!g) return fallback(args);
    return output(args.backend as WasmBackend, g.yShape, (y, view) =>
      native.conv2d({ ...g, filterKey: filterKey(native, filter), x: view(x), filter: view(filter), y }),
    );
  },
  [tf.Conv2DBackpropInput]: (native, fallback) => (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
    const g = dataFormat !== 'NCHW' && float32(dy, filter) ? geometry(inputShape, filter.shape, strides, 1, pad, dimRoundingMode) : undefined;
    if (!g) return fallback(args);
    return output(args.backend as WasmBackend, inputShape, (dx, view) =>
      native.conv2dBackpropInput({ ...g, filterKey: filterKey(native, filter), dy: view(dy), filter: view(filter), dx }),
    );
  },
  [tf.Conv2DBackpropFilter]: (native, fallback) => (args) => {
    const { x, dy } = args.inputs as { x: Info; dy: Info };
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    const g = dataFormat !== 'NCHW' && float32(x, dy) ? geometry(x.shape, filterShape, strides, 1, pad, dimRoundingMode) : undefined;
    if (!g) return fallback(args);
    return output(args.backend as WasmBackend, filterShape, (dfilter, view) => native.conv2dBackpropFilter({ ...g, x: view(x), dy: view(dy), dfilter }));
  },
  [tf.BatchMatMul]: (native, fallback) => (args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
    if (!float32(a, b) || a.shape.length < 2 || b.shape.length < 2) return fallback(args);
    const [ra, rb] = [a.shape.length, b.shape.length];
    const [m, k] = transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
    const [kb, n] = transposeB ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
    const batch = batchShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (k !== kb || m * k * n === 0 || !batch) return fallback(args); // wasm's kernel says what is wrong
    const [ga, gb] = [tf.util.sizeFromShape(a.shape.slice(0, -2)), tf.util.sizeFromShape(b.shape.slice(0, -2))];
    return output(args.backend as WasmBackend, [...batch, m, n], (c, view) =>
      native.matmul({ a: view(a), b: view(b), c, dims: [ga, gb, m, k, n], transposeA, transposeB }),
    );
  },
};

/**
 * The broadcast batch shape of a product whose operands have batch shapes `a` and `b`, where each
 * operand either holds the whole batch in the same order or a single matrix (the addon's "equal
 * or 1"); undefined otherwise.
 */
function batchShape(a: number[], b: number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const pad = (s: number[]) => [...new Array(rank - s.length).fill(1), ...s];
  const [pa, pb] = [pad(a), pad(b)];
  const out = pa.map((d, i) => Math.max(d, pb[i]));
  const fits = (p: number[]) => tf.util.sizeFromShape(p) === 1 || p.every((d, i) => d === out[i]);
  return pa.every((d, i) => d === pb[i] || d === 1 || pb[i] === 1) && fits(pa) && fits(pb) ? out : undefined;
}
