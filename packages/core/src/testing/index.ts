/**
 * Test utilities for @png packages: leak checks, tolerance comparison, golden fixture loading.
 * Imported as `@png/core/testing`; Node only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `fn` and throws unless the number of live tensors is unchanged afterwards. Whatever `fn`
 * returns (tensors or containers of tensors) is disposed first, as a caller would.
 */
export async function expectNoLeak(fn: () => unknown | Promise<unknown>, label = 'function'): Promise<void> {
  const before = tf.memory().numTensors;
  const result = await fn();
  tf.dispose(result as tf.TensorContainer);
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`${label} leaked ${after - before} tensors (${before} live before, ${after} after)`);
}

/** `value`, checked to be neither undefined nor null (a failed check names `label`); narrows its type for the test. */
export function expectDefined<T>(value: T | null | undefined, label = 'value'): T {
  if (value === undefined || value === null) throw new Error(`expected ${label} to be defined, got ${value}`);
  return value;
}

/** Largest |a[i] − b[i]|; NaN in either side makes the result NaN. Lengths must match. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates
  }
  return m;
}

/** Throws with the worst index unless `actual` and `expected` agree within `atol` everywhere. */
export async function expectClose(actual: tf.Tensor | ArrayLike<number>, expected: ArrayLike<number>, atol: number, label = 'tensor'): Promise<number> {
  const a = actual instanceof tf.Tensor ? await actual.data() : actual;
  const err = maxAbsDiff(a as ArrayLike<number>, expected);
  if (!(err <= atol)) {
    let worst = 0;
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - expected[i]) <= Math.abs(a[worst] - expected[worst]))) worst = i;
    throw new Error(`${label}: max abs error ${err} > ${atol} (at ${worst}: got ${a[worst]}, expected ${expected[worst]})`);
  }
  return err;
}

/**
 * The project's shared fixtures folder: `$PNG_SHARED_DIR/fixtures`, else `../shared/fixtures`
 * beside the repo root (found by walking up from the working directory).
 */
export function sharedFixturesDir(): string {
  const env = process.env.PNG_SHARED_DIR;
  if (env) return path.join(env, 'fixtures');
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, '..', 'shared', 'fixtures');
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(candidate)) return path.resolve(candidate);
    if (path.dirname(dir) === dir) break;
  }
  throw new Error('cannot find ../shared/fixtures beside the repo root; set PNG_SHARED_DIR to the folder that holds fixtures/');
}

/**
 * A `fetch` (for the `fromUrl` loaders) that serves the files under `root` at `http://files/<path>`
 * (404 for anything else) and records every URL it was asked for.
 */
export function folderFetch(root: string): ((url: string) => Promise<Response>) & { requested: string[] } {
  const requested: string[] = [];
  const get = async (url: string): Promise<Response> => {
    requested.push(url);
    const file = url.startsWith(FOLDER_FETCH_BASE) ? path.join(root, url.slice(FOLDER_FETCH_BASE.length)) : undefined;
    if (file === undefined || !fs.existsSync(file) || !fs.statSync(file).isFile()) return new Response(null, { status: 404, statusText: 'Not Found' });
    return new Response(fs.readFileSync(file));
  };
  return Object.assign(get, { requested });
}
/** Where folderFetch serves its folder. */
export const FOLDER_FETCH_BASE = 'http://files/';

export interface ReferenceTensor {
  readonly key: string;
  readonly shape: number[];
  readonly data: Float32Array | Int32Array;
  readonly desc?: string;
}

/** Reference tensors of a fixture folder with an `index.json` (`tensors: {key: {file, dtype, shape}}`). */
export class FixtureIndex {
  readonly index: { tensors: Record<string, { file: string; dtype: 'float32' | 'int32'; shape: number[]; desc?: string }>; [k: string]: unknown };

  constructor(readonly dir: string) {
    this.index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  }

  keys(prefix = ''): string[] {
    return Object.keys(this.index.tensors).filter((k) => k.startsWith(prefix));
  }

  has(key: string): boolean {
    return key in this.index.tensors;
  }

  read(key: string): ReferenceTensor {
    const entry = this.index.tensors[key];
    if (!entry) throw new Error(`fixture ${this.dir}: no reference tensor '${key}'`);
    const bytes = fs.readFileSync(path.join(this.dir, entry.file));
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const data = entry.dtype === 'int32' ? new Int32Array(buf) : new Float32Array(buf);
    const n = entry.shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`fixture ${entry.file}: ${data.length} values for shape [${entry.shape}]`);
    return { key, shape: entry.shape, data, desc: entry.desc };
  }
}

/** NCHW data (torch) → NHWC data and shape (ours). */
export function nchwToNhwc(data: Float32Array, shape: readonly number[]): { data: Float32Array; shape: number[] } {
  const [n, c, h, w] = shape;
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[((b * h + y) * w + x) * c + ch] = data[((b * c + ch) * h + y) * w + x];
  return { data: out, shape: [n, h, w, c] };
}

export { gradCheck, randn, type GradCheckEntry } from './grad_check';
