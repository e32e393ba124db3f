export { removeStaleTemporaries, writeFileAtomic } from './atomic_write';
export { killPoint } from './kill_point';
export { createProgressBar, formatDuration, type ProgressBar } from './progress';
export { Prng, deriveSeed, mulberry32 } from './prng';
