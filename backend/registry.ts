import type { Backend } from './backend.js';
import { HostGwBackend } from './hostgw/hostgw.js';
import { VxlanBackend } from './vxlan/vxlan.js';

/** The backends weftd offers, by config type: an explicit map, no registration by import side effects. */
export function createBackends(): ReadonlyMap<string, Backend> {
  const backends: Backend[] = [new VxlanBackend(), new HostGwBackend()];
  return new Map(backends.map((b) => [b.type, b]));
}
