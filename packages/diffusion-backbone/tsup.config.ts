import { packageConfig } from '../../tsup.base';

// The Node-only entry `png-tiny-sd` builds after this one (tsup.png-tiny-sd.config.ts, see the build script): its
// declarations import the package's own index by name, so dist/index.d.ts must exist first.
export default packageConfig({ index: 'src/index.ts' });
