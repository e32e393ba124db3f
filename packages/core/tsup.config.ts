import { packageConfig } from '../../tsup.base';

// The gradient and chained-op registrations of tfjs-core exist only as ES modules; bundle them (gradients.ts, chained_ops.ts).
export default packageConfig({ index: 'src/index.ts', testing: 'src/testing/index.ts' }, { noExternal: [/^@tensorflow\/tfjs-core\/dist\//] });
