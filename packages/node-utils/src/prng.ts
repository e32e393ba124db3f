/**
 * mulberry32: a small seeded PRNG of 32-bit state returning floats in [0, 1). Only 32-bit integer
 * arithmetic and one division, so a stream is the same on every platform.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A seeded PRNG (mulberry32 over a splitmix-style seed mix, so that nearby seeds give unrelated
 * streams) with the draws the synthetic benchmark and the data order need. Reproducible byte for
 * byte on any platform.
 */
export class Prng {
  /** Uniform in [0, 1). */
  readonly next: () => number;

  /** @param seed any integer; different seeds give unrelated streams. */
  constructor(seed: number) {
    this.next = mulberry32(mixSeed(seed));
  }

  /** Uniform integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element, uniformly. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

/** Hashes a list of integers into one 32-bit seed (for per-split, per-image sub-streams). */
export function deriveSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) h = mixSeed(h ^ mixSeed(part));
  return h >>> 0;
}

function mixSeed(x: number): number {
  let z = (x | 0) ^ Math.floor(x / 4294967296);
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) | 0;
}
