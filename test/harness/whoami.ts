/**
 * What the Docker end-to-end tests share: a container that tells a client
 * which address it came from (busybox httpd running a CGI script), how to
 * read its answer, and the Docker options weft generates for a node.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WEFTD, type WeftNode } from './cluster.js';

/** A CGI script that answers with the client's address as the server sees it (REMOTE_ADDR). */
export const WHOAMI_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n';

/** The container command serving WHOAMI_CGI at :8080/cgi-bin/whoami, over both families. */
export const WHOAMI_WEB = `mkdir -p /www/cgi-bin && printf '${WHOAMI_CGI.replace(/\n/g, '\\n')}' > /www/cgi-bin/whoami && chmod +x /www/cgi-bin/whoami && exec httpd -f -p 8080 -h /www`;

/** busybox httpd reports an IPv6 client as `[addr]`, an IPv4 one on its dual-stack socket as `[::ffff:a.b.c.d]`. */
export function clientAddress(reply: string): string {
  return reply.trim().replace(/^\[(::ffff:)?/, '').replace(/\]$/, '');
}

/** `weftd docker-opts` on the node's subnet file (plus `extra`, e.g. `--bridge weft0`): the env file and dockerd's options. */
export async function dockerOpts(node: WeftNode, extra: readonly string[] = []): Promise<{ file: string; opts: string[] }> {
  const out = join(node.dir, 'docker_opts.env');
  await node.ns.exec(WEFTD, 'docker-opts', '-f', node.subnetFile, '-d', out, ...extra);
  const file = readFileSync(out, 'utf8');
  return { file, opts: /^DOCKER_OPTS="(.*)"$/m.exec(file)![1]!.trim().split(' ') };
}
