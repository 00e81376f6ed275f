/**
 * One error hierarchy for weft. Callers decide what to do by `code`, never by
 * parsing messages. `retryable` says whether waiting and trying again can help.
 */
export type WeftErrorCode =
  | 'WEFT_ERR_CONFIG_MISSING' // <prefix>/config absent in etcd
  | 'WEFT_ERR_CONFIG_INVALID' // network config present but violates a rule
  | 'WEFT_ERR_LEASE_MALFORMED' // a lease key or value read from etcd fails validation
  | 'WEFT_ERR_RANGE_EXHAUSTED' // no free subnet in [SubnetMin, SubnetMax]
  | 'WEFT_ERR_LEASE_CONFLICT' // a create-if-absent transaction lost a race
  | 'WEFT_ERR_STORE_UNAVAILABLE' // etcd could not be reached or answered with a transport error
  | 'WEFT_ERR_ETCD_LEASE_NOT_FOUND' // etcd answered that an etcd lease id does not exist (expired or revoked)
  | 'WEFT_ERR_KERNEL' // a kernel (netlink / iproute2) operation failed
  | 'WEFT_ERR_LISTENER_MISSING' // the kernel listener program (dist/bin/weft-listener) is not where the build puts it
  | 'WEFT_ERR_OPTION_INVALID' // a command-line / config-file option is invalid
  | 'WEFT_ERR_ADDRESS_INVALID' // an IP or MAC address, CIDR or prefix length does not parse (common/subnet.ts, the
  //                             netlink encoders); callers that know where the text came from say so with
  //                             CONFIG_INVALID, LEASE_MALFORMED or OPTION_INVALID
  | 'WEFT_ERR_INVALID_STATE' // an object was used in a state that does not allow it (before it is ready, or after
  //                           close()/destroy()): a bug in the caller, not a condition to wait out
  | 'WEFT_ERR_HARNESS' // bench/, demo/ and the test harness only: a run found weft or its test bed not as the run needs it; the run stops
  | 'WEFT_ERR_SUBNET_FILE_MISSING' // the subnet file (subnet.env) does not exist: weftd writes it once it holds a lease
  | 'WEFT_ERR_SUBNET_FILE_INVALID' // the subnet file lacks a variable or holds a value that does not parse
  | 'WEFT_ERR_CNI_VERSION' // CNI: the config's cniVersion is not supported, or does not allow the command
  | 'WEFT_ERR_CNI_ENV' // CNI: a CNI_* environment variable is missing or invalid
  | 'WEFT_ERR_CNI_DECODE' // CNI: the config on stdin (or a saved one) is not a JSON object
  | 'WEFT_ERR_CNI_IO' // CNI: a file operation failed (stdin, the saved state, installing the plugin)
  | 'WEFT_ERR_CNI_DELEGATE' // CNI: the delegate plugin (bridge, host-local ...) could not be run or reported an error
  | 'WEFT_ERR_CNI_CHECK' // CNI CHECK: the attachment is not as ADD left it
  | 'WEFT_ERR_ABORTED'; // the operation was cancelled through its AbortSignal

const RETRYABLE: ReadonlySet<WeftErrorCode> = new Set<WeftErrorCode>([
  'WEFT_ERR_CONFIG_MISSING',
  'WEFT_ERR_CONFIG_INVALID',
  'WEFT_ERR_RANGE_EXHAUSTED',
  'WEFT_ERR_LEASE_CONFLICT',
  'WEFT_ERR_STORE_UNAVAILABLE',
  'WEFT_ERR_ETCD_LEASE_NOT_FOUND',
  'WEFT_ERR_KERNEL',
  'WEFT_ERR_SUBNET_FILE_MISSING',
]);

export class WeftError extends Error {
  readonly code: WeftErrorCode;
  constructor(code: WeftErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WeftError';
    this.code = code;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

export function isWeftError(err: unknown, code?: WeftErrorCode): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}

/** Wraps anything thrown by the etcd client into a retryable store error. */
export function storeError(operation: string, cause: unknown): WeftError {
  if (cause instanceof WeftError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new WeftError('WEFT_ERR_STORE_UNAVAILABLE', `etcd ${operation} failed: ${detail}`, { cause });
}
