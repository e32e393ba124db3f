// The jest project 'native kernels' (jest.config.cjs): a suite that set the wasm backend must have run on the native kernels.
import { wasmComputePath } from '@png/core';

afterAll(() => {
  const computed = wasmComputePath();
  if (computed !== undefined && !computed.startsWith('native'))
    throw new Error(`the 'native kernels' jest project ran on: ${computed}; build @png/native-kernels (npm rebuild @png/native-kernels)`);
});
