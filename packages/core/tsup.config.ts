import { packageConfig } from '../../tsup.base';

// The gradient registrations of tfjs-core exist only as ES modules; bundle them (gradients.ts).
export default packageConfig({ index: 'src/index.ts', testing: 'src/testing/index.ts' }, { noExternal: [/^@tensorflow\/tfjs-core\/dist\//] });
