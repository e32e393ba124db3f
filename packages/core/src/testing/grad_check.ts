// Test helper: central finite differences against tf.variableGrads, in float32.
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '@png/node-utils';

export interface GradCheckEntry {
  readonly name: string;
  readonly index: number;
  readonly analytic: number;
  readonly numeric: number;
  /** relError of the central difference, or, at a kink, of the better one-sided difference. */
  readonly relError: number;
  /**
   * The one-sided differences disagree by > 10%: f has a kink (a ReLU or a masked-attention
   * threshold crossed) within ±ε, where the central difference is meaningless; the analytic
   * gradient must then match the one-sided difference on the kink-free side.
   */
  readonly kink: boolean;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);

/** `n` standard normal floats from `seed` (Box–Muller over mulberry32; 1 − u keeps the log finite). */
export function randn(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()));
}

async function evalScalar(f: () => tf.Scalar): Promise<number> {
  const y = tf.tidy(f);
  const v = (await y.data())[0];
  y.dispose();
  return v;
}

/**
 * Compares d f / d θ for `entries` randomly chosen parameter entries (among those with
 * |grad| ≥ minGrad, spread over the variables) with (f(θ+ε) − f(θ−ε)) / 2ε.
 * relError = |a − n| / max(|a|, |n|).
 */
export async function gradCheck(
  f: () => tf.Scalar,
  vars: tf.Variable[],
  options: { entries?: number; eps?: number; seed?: number; minGrad?: number } = {},
): Promise<GradCheckEntry[]> {
  const { entries = 12, eps = 1e-2, seed = 1, minGrad = 1e-2 } = options;
  const random = mulberry32(seed);
  const { value, grads } = tf.variableGrads(f, vars);
  value.dispose();
  const candidates: Array<{ v: tf.Variable; g: Float32Array; idx: number[] }> = [];
  for (const v of vars) {
    if (!grads[v.name]) continue; // not connected to f (e.g. an unused memory level's input_proj)
    const g = (await grads[v.name].data()) as Float32Array;
    const idx: number[] = [];
    g.forEach((x, i) => {
      if (Math.abs(x) >= minGrad) idx.push(i);
    });
    if (idx.length) candidates.push({ v, g, idx });
  }
  tf.dispose(Object.values(grads));
  if (!candidates.length) throw new Error('gradCheck: no gradient entry above minGrad');
  const out: GradCheckEntry[] = [];
  for (let k = 0; k < entries; k++) {
    const c = candidates[Math.floor(random() * candidates.length)];
    const i = c.idx[Math.floor(random() * c.idx.length)];
    const orig = (await c.v.data()) as Float32Array;
    const at = async (delta: number) => {
      const copy = orig.slice();
      copy[i] += delta;
      tf.tidy(() => c.v.assign(tf.tensor(copy, c.v.shape)));
      return evalScalar(f);
    };
    const plus = await at(eps);
    const minus = await at(-eps);
    tf.tidy(() => c.v.assign(tf.tensor(orig, c.v.shape)));
    const center = await evalScalar(f);
    const numeric = (plus - minus) / (2 * eps);
    const right = (plus - center) / eps;
    const left = (center - minus) / eps;
    const analytic = c.g[i];
    const kink = rel(left, right) > 0.1;
    const relError = kink ? Math.min(rel(analytic, left), rel(analytic, right)) : rel(analytic, numeric);
    out.push({ name: c.v.name, index: i, analytic, numeric, relError, kink });
  }
  return out;
}
