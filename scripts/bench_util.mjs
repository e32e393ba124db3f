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
