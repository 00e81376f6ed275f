#!/usr/bin/env node
/**
 * weft-cni: weft's CNI plugin, a drop-in for flannel's. A container runtime
 * runs it with CNI_COMMAND and the other CNI_* variables in the environment
 * and the network config on stdin; it prints a result (or nothing) and exits
 * 0, or prints a CNI error object and exits 1. Installed under any name
 * (`weft`, `flannel`) in the runtime's CNI bin directory.
 *
 * It runs on every pod's start, so it loads only what it needs: no logger,
 * no option parser, no etcd client (cni/ imports only common/ and lease/).
 */
import { readFileSync, writeSync } from 'node:fs';
import { WeftError } from '../common/errors.js';
import { runCommand } from './commands.js';
import { CURRENT_VERSION, peekVersion } from './conf.js';
import { errorResult } from './errors.js';

/** stdin, whole. A runtime passes a pipe; a non-blocking one is read the asynchronous way. */
async function readStdin(): Promise<string> {
  try {
    return readFileSync(0, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw new WeftError('WEFT_ERR_CNI_IO', `cannot read the network config from stdin: ${(err as Error).message}`, { cause: err });
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
}

/**
 * Output through the file descriptors: process.stdout and process.stderr
 * would load Node's stream and socket modules first, a visible share of a
 * run this short.
 */
function write(fd: 1 | 2, text: string): void {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      // A non-blocking pipe that is full: try again.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

function fail(err: unknown, command: string, cniVersion: string): void {
  write(1, `${JSON.stringify(errorResult(err, command, cniVersion))}\n`);
  process.exitCode = 1;
}

async function main(): Promise<void> {
  const command = process.env.CNI_COMMAND ?? '';
  let cniVersion = CURRENT_VERSION;
  // Whatever escapes (a bug) still ends as an error object, never as a stack trace.
  process.on('uncaughtException', (err) => {
    fail(err, command, cniVersion);
    process.exit(1);
  });
  try {
    const stdin = await readStdin();
    cniVersion = peekVersion(stdin) ?? CURRENT_VERSION;
    const out = runCommand({ command, stdin, env: process.env, warn: (line) => write(2, `${line}\n`) });
    if (out) write(1, `${out}\n`);
  } catch (err) {
    fail(err, command, cniVersion);
  }
}

void main();
