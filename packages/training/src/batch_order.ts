import { Prng } from '@png/node-utils';

/**
 * The data order of a run: epoch e visits the `size` samples in a shuffle seeded by (seed, e);
 * step s takes the next `batchSize` of that endless stream. A function of the step alone, so a
 * resumed run sees the batches an uninterrupted one would.
 */
export class BatchOrder {
  private readonly epochs = new Map<number, number[]>();

  constructor(
    readonly size: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {}

  /** The sample indices of step `step` (0-based). */
  batch(step: number): number[] {
    const out: number[] = [];
    for (let k = step * this.batchSize; k < (step + 1) * this.batchSize; k++) {
      const epoch = Math.floor(k / this.size);
      let order = this.epochs.get(epoch);
      if (!order) {
        order = new Prng(this.seed * 100_003 + epoch).shuffle(Array.from({ length: this.size }, (_, i) => i));
        this.epochs.clear(); // a batch spans at most two epochs, and steps only go forward
        this.epochs.set(epoch, order);
      }
      out.push(order[k % this.size]);
    }
    return out;
  }
}
