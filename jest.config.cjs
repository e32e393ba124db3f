/** Tests run on the TypeScript sources (no build between packages); see tsconfig.base.json paths. */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testEnvironmentOptions: { globalsCleanup: 'off' },
  roots: ['<rootDir>/packages', '<rootDir>/examples', '<rootDir>/scripts'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.base.json', diagnostics: false }],
  },
  globalSetup: '<rootDir>/scripts/jest_global_setup.cjs',
  moduleNameMapper: {
    '^@tensorflow/tfjs-core/dist/register_all_gradients$': '<rootDir>/node_modules/.cache/png-jest/register_all_gradients.cjs',
    '^@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops$': '<rootDir>/node_modules/.cache/png-jest/register_all_chained_ops.cjs',
    '^@png/native-kernels$': '<rootDir>/packages/native-kernels/index.js',
    '^@png/core/testing$': '<rootDir>/packages/core/src/testing/index.ts',
    '^@png/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
  },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 120000,
};
