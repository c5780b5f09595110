// The conformance CLI imports `globSync` from `fs`, which Node has only since 22; on Node 20
// (Debian's and this project's machines) its `fs` is given one, from the `glob` package.
// Used as `node --import ./node20.mjs …`; on Node 22 and later it does nothing.
import { register } from 'node:module';

if (Number(process.versions.node.split('.')[0]) < 22) {
  register('./node20-hooks.mjs', import.meta.url);
}
