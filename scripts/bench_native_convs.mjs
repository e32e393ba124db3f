// What the native kernels' reordered-filter cache buys: SD's 3×3 convolutions (32×32×320,
// 16×16×640, 8×8×1280; batch 1, the same frozen filter every call) on the wasm kernels, and on the
// native kernels on 1 thread without the cache (PNG_NATIVE_FILTER_CACHE_MB=0: the filter reordered
// on every call) and with it, then on every core with it. Prints per path the median wall time per
// call and the CPU time per call (which a busy machine inflates far less), with the ratios over
// the first path, all measured in this run.
//
//   npm run bench:convs
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { reportFigures, runPerComputePath, timeIt, wasmComputePaths } from './bench_util.mjs';

const SHAPES = [
  [32, 320],
  [16, 640],
  [8, 1280],
];

if (process.env.PNG_BENCH_PATH) {
  await setBackend('wasm');
  const figures = {};
  for (const [hw, c] of SHAPES) {
    const x = tf.randomNormal([1, hw, hw, c]);
    const w = tf.randomNormal([3, 3, c, c]);
    const call = async () => {
      const y = tf.conv2d(x, w, 1, 'same');
      await y.data();
      y.dispose();
    };
    const runs = 7;
    const cpu0 = process.cpuUsage();
    const wall = await timeIt(call, { runs, warmup: 1 });
    const cpu = process.cpuUsage(cpu0);
    const gflop = (2 * hw * hw * c * c * 9) / 1e9;
    const cpuPerCall = (cpu.user + cpu.system) / 1e6 / (runs + 1);
    console.log(
      `${hw}×${hw}×${c}: ${wall.toFixed(4)} s per call (${(gflop / wall).toFixed(1)} GFLOP/s), ${cpuPerCall.toFixed(4)} CPU s per call (${(gflop / cpuPerCall).toFixed(1)} GFLOP per CPU s)`,
    );
    figures[`${hw}×${hw}×${c} wall`] = wall;
    figures[`${hw}×${hw}×${c} CPU`] = cpuPerCall;
    tf.dispose([x, w]);
  }
  reportFigures(figures);
} else {
  const { kernels } = await import('@png/native-kernels').then((m) => m.default ?? m);
  if (!kernels) throw new Error('bench:convs compares the native kernels, and @png/native-kernels is not built here: npm rebuild @png/native-kernels');
  const cores = os.availableParallelism();
  await runPerComputePath(fileURLToPath(import.meta.url), [], {}, [
    ...wasmComputePaths(cores),
    { name: 'native 1T, reordered per call', env: { PNG_NATIVE: '1', OMP_NUM_THREADS: '1', PNG_NATIVE_FILTER_CACHE_MB: '0' } },
    { name: 'native 1T, cached filter', env: { PNG_NATIVE: '1', OMP_NUM_THREADS: '1' } },
    ...(cores > 1 ? [{ name: `native ${cores}T, cached filter`, env: { PNG_NATIVE: '1', OMP_NUM_THREADS: String(cores) } }] : []),
  ]);
}
