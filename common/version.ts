import { createRequire } from 'node:module';

/**
 * weft's version, from package.json. Both the compiled modules
 * (dist/<dir>/*.js) and the bundles (dist/bin/*.mjs) sit two levels below it.
 */
export const WEFT_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
