// Shared helpers of the benchmark scripts: timing, the backend's own conv2d peak, memory peaks.
import * as tf from '@tensorflow/tfjs-core';

/** Median wall time (s) of `runs` awaited calls of `fn` after `warmup` calls. */
export async function timeIt(fn, { runs = 3, warmup = 1 } = {}) {
  for (let i = 0; i < warmup; i++) await fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * The backend's own conv2d throughput (GFLOP/s) on SD-like 3×3 convolutions, measured now, in
 * this process: the denominator of every "fraction of peak" figure.
 */
export async function convPeakGflops() {
  let best = 0;
  for (const [hw, c] of [
    [32, 320],
    [16, 640],
    [8, 1280],
  ]) {
    const x = tf.randomNormal([1, hw, hw, c]);
    const w = tf.randomNormal([3, 3, c, c]);
    const s = await timeIt(
      async () => {
        const y = tf.conv2d(x, w, 1, 'same');
        await y.data();
        y.dispose();
      },
      { runs: 5 },
    );
    best = Math.max(best, (2 * hw * hw * c * c * 9) / s / 1e9);
    tf.dispose([x, w]);
  }
  return best;
}

/** Tracks the peak resident set size (which includes the wasm heap) while `fn` runs. */
export async function withPeakRss(fn) {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    const result = await fn();
    return { result, peakRss: Math.max(peak, process.memoryUsage().rss) };
  } finally {
    clearInterval(timer);
  }
}

export const gb = (bytes) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

const RESULT_LINE = 'bench-result ';

/**
 * The compute paths of the wasm backend one benchmark run compares, each as the environment of a
 * child process (the path is chosen once per process): wasm's own kernels on 1 thread and, on a
 * machine with more cores, on XNNPACK threads (PNG_WASM_THREADS: tfjs' threaded build, up to 8);
 * where @png/native-kernels is built, the native ones on 1 thread and on every core. PNG_NATIVE=0
 * or 1 set by the caller keeps those paths alone (the native one on every core, or OMP_NUM_THREADS).
 */
export async function computePaths() {
  const { kernels } = await import('@png/native-kernels').then((m) => m.default ?? m).catch(() => ({ kernels: null }));
  const cores = (await import('node:os')).availableParallelism();
  const wasmPaths = wasmComputePaths(cores);
  const native = (threads) => ({ name: `native ${threads}T`, env: { PNG_NATIVE: '1', OMP_NUM_THREADS: String(threads) } });
  if (process.env.PNG_NATIVE === '0') return wasmPaths;
  if (process.env.PNG_NATIVE === '1') return [{ name: 'native', env: {} }];
  return kernels ? [...wasmPaths, native(1), ...(cores > 1 ? [native(cores)] : [])] : wasmPaths;
}

/** wasm's own kernels on 1 thread and, with more cores, on XNNPACK threads (tfjs' threaded build, up to 8): compute paths for runPerComputePath. */
export function wasmComputePaths(cores) {
  const wasm = (threads) => ({ name: threads === 1 ? 'wasm' : `wasm ${threads}T`, env: { PNG_NATIVE: '0', PNG_WASM_THREADS: String(threads) } });
  return [wasm(1), ...(cores > 1 ? [wasm(Math.min(cores, 8))] : [])];
}

/** In a child started by runPerComputePath: hands the parent its figures (seconds, by name). */
export function reportFigures(figures) {
  if (process.env.PNG_BENCH_PATH) console.log(`${RESULT_LINE}${JSON.stringify(figures)}`);
}

/**
 * Runs `script` (with `args`, and `env` added) once per compute path (`paths`, default
 * computePaths()), one child process at a time, passing its output through with the path's name
 * in front. Then prints each figure that the children reported (reportFigures) per path, with the
 * first path's time over each path's (the speed-up). Throws if a child fails.
 */
export async function runPerComputePath(script, args = [], env = {}, paths = undefined) {
  const { spawnSync } = await import('node:child_process');
  paths ??= await computePaths();
  const figures = [];
  for (const p of paths) {
    console.log(`--- compute path: ${p.name}`);
    const run = spawnSync(process.execPath, [script, ...args], {
      env: { ...process.env, ...env, ...p.env, PNG_BENCH_PATH: p.name },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 64 << 20,
    });
    const lines = (run.stdout ?? '').split('\n').filter(Boolean);
    for (const line of lines) if (!line.startsWith(RESULT_LINE)) console.log(`[${p.name}] ${line}`);
    if (run.status !== 0) throw new Error(`the benchmark on the ${p.name} path failed (exit ${run.status ?? run.signal})`);
    const result = lines.find((l) => l.startsWith(RESULT_LINE));
    figures.push(result ? JSON.parse(result.slice(RESULT_LINE.length)) : {});
  }
  console.log(`--- per compute path (seconds; × = ${paths[0].name}'s time over this path's)`);
  for (const name of Object.keys(figures[0])) {
    const cells = paths.map(
      (p, i) => `${p.name} ${figures[i][name]?.toFixed(2) ?? '–'} s${i ? ` (${(figures[0][name] / figures[i][name]).toFixed(2)}×)` : ''}`,
    );
    console.log(`${name}: ${cells.join(' | ')}`);
  }
}
