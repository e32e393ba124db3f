export { removeStaleTemporaries, writeFileAtomic } from './atomic_write';
export { createProgressBar, formatDuration, type ProgressBar } from './progress';
export { Prng, deriveSeed, mulberry32 } from './prng';
