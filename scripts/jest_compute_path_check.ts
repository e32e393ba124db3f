// A jest project on another compute path of the wasm backend (jest.config.cjs, `computePathProject`):
// a suite that set the wasm backend must have run on that path.
import { wasmComputePath } from '@png/core';

const { startsWith, fix } = (globalThis as unknown as { PNG_COMPUTE_PATH: { startsWith: string; fix: string } }).PNG_COMPUTE_PATH;

afterAll(() => {
  const computed = wasmComputePath();
  if (computed !== undefined && !computed.startsWith(startsWith)) throw new Error(`this jest project expects '${startsWith}…' but ran on: ${computed}; ${fix}`);
});
