// Measures the synthetic generator, the loader and the streaming parser on the built package.
// Run: npm run build -w @png/png-data && node packages/png-data/bench/bench.mjs
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PngDataset, generateSyntheticBenchmark, streamJsonArray } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'png-data-bench-'));
try {
  for (const size of [
    [64, 64],
    [256, 320],
  ]) {
    const root = join(dir, `bench-${size.join('x')}`);
    let t = performance.now();
    await generateSyntheticBenchmark(root, { seed: 1, train: 0, val: 100, size });
    const generateMs = performance.now() - t;
    t = performance.now();
    const dataset = await PngDataset.open(root, 'val2017');
    let records = 0;
    let phrases = 0;
    for await (const sample of dataset.records()) {
      records++;
      phrases += sample.phrases.length;
    }
    const loadMs = performance.now() - t;
    console.log(
      `${size.join('×')}: generate 100 images ${generateMs.toFixed(0)} ms; load ${records} records (${phrases} phrases) ${loadMs.toFixed(0)} ms = ${((records / loadMs) * 1000).toFixed(0)} records/s`,
    );
  }
  // Streaming parser alone on a large png_coco-like file.
  const one = JSON.parse(readFileSync(join(dir, 'bench-64x64', 'annotations', 'png_coco_val2017.json'), 'utf8'));
  const big = join(dir, 'big.json');
  const copies = Math.ceil(100e6 / JSON.stringify(one).length);
  writeFileSync(big, `[${Array.from({ length: copies }, () => JSON.stringify(one).slice(1, -1)).join(',')}]`);
  const mb = statSync(big).size / 1e6;
  const t = performance.now();
  let n = 0;
  for await (const _ of streamJsonArray(big)) n++;
  const s = (performance.now() - t) / 1000;
  console.log(`streamJsonArray: ${mb.toFixed(0)} MB, ${n} records in ${s.toFixed(2)} s = ${(mb / s).toFixed(0)} MB/s, ${(n / s).toFixed(0)} records/s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
