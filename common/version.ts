import { createRequire } from 'node:module';

/**
 * weft's version, from package.json. Both the compiled modules
 * (dist/<dir>/*.js) and the bundles (dist/bin/*-bundle.cjs) sit two levels below it.
 */
export const WEFT_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/**
 * Whether this process was compiled from the build's V8 code cache
 * (scripts/launcher.cjs): 'used', 'rejected' (made by another Node version or
 * under other flags), 'absent', or 'none' when not started by a launcher.
 */
export function codeCacheState(): string {
  return (globalThis as { __weftCodeCache?: string }).__weftCodeCache ?? 'none';
}

/** What the launcher has to add to the first log line: why it could not relaunch with its Node flags, or ''. */
export function launchNote(): string {
  const note = (globalThis as { __weftLaunchNote?: string }).__weftLaunchNote;
  return note ? `; ${note}` : '';
}
