/** Tests run on the TypeScript sources (no build between packages); see tsconfig.base.json paths. */
const fs = require('node:fs');
const path = require('node:path');

/** @type {import('jest').Config} */
const project = {
  testEnvironment: 'node',
  testEnvironmentOptions: { globalsCleanup: 'off' },
  roots: ['<rootDir>/packages', '<rootDir>/examples', '<rootDir>/scripts'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.base.json', diagnostics: false }],
  },
  moduleNameMapper: {
    '^@tensorflow/tfjs-core/dist/register_all_gradients$': '<rootDir>/node_modules/.cache/png-jest/register_all_gradients.cjs',
    '^@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops$': '<rootDir>/node_modules/.cache/png-jest/register_all_chained_ops.cjs',
    '^@png/native-kernels$': '<rootDir>/packages/native-kernels/index.js',
    '^@png/core/testing$': '<rootDir>/packages/core/src/testing/index.ts',
    '^@png/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
  },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
};

/**
 * A project that reruns `suites` on another compute path of the wasm backend, set by `env` before
 * they import @png/core; each suite that set the wasm backend must have run on a path whose
 * description (wasmComputePath) starts with `startsWith`, else the run fails with `fix`.
 */
function computePathProject(displayName, suites, env, startsWith, fix) {
  return {
    ...project,
    displayName,
    testMatch: suites.map((name) => `**/${name}.test.ts`),
    globals: { PNG_COMPUTE_PATH: { env, startsWith, fix } },
    setupFiles: ['<rootDir>/scripts/jest_compute_path_setup.cjs'],
    setupFilesAfterEnv: ['<rootDir>/scripts/jest_compute_path_check.ts'],
  };
}

/**
 * Parity suites against the diffusers/transformers fixtures, run a second time on the wasm
 * backend's native compute path (`PNG_NATIVE=1`: @png/native-kernels over oneDNN), where the addon
 * is built, and always in CI (whose .ci/run installs oneDNN: an addon missing there fails them).
 * The UNet (convolutions, attention products), CLIP (matrix products) and the whole SD pipeline
 * (VAE included) cover every native kernel; native_kernels.test.ts checks each one, gradients
 * too, against cpu. (The VAE's own suite adds 1.5 min on this machine and no kernel.)
 */
const NATIVE_PARITY_SUITES = ['unet_2d_condition', 'modeling_clip', 'pipeline_stable_diffusion'];
const nativeBuilt = fs.existsSync(path.join(__dirname, 'packages', 'native-kernels', 'build', 'Release', 'png_native_kernels.node'));

/**
 * The UNet's parity suite on tfjs-backend-wasm's threaded build (`PNG_WASM_THREADS=2`, see
 * wasm_threads.ts): every kernel the UNet uses, on XNNPACK's threads, against the diffusers fixtures.
 */
const THREADED_PARITY_SUITES = ['unet_2d_condition'];

module.exports = {
  globalSetup: '<rootDir>/scripts/jest_global_setup.cjs',
  testTimeout: 120000,
  projects: [
    project,
    ...(nativeBuilt || process.env.CI === 'true'
      ? [computePathProject('native kernels', NATIVE_PARITY_SUITES, { PNG_NATIVE: '1' }, 'native', 'build @png/native-kernels (npm rebuild @png/native-kernels)')]
      : []),
    computePathProject('wasm threads', THREADED_PARITY_SUITES, { PNG_WASM_THREADS: '2' }, 'wasm kernels (XNNPACK, 2 threads)', 'see packages/core/src/backends/wasm/wasm_threads.ts'),
  ],
};
