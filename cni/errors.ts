/**
 * How weft-cni fails: by the CNI spec, an error object on stdout
 * (`{cniVersion, code, msg, details}`) and a non-zero exit, never a stack
 * trace. Inside the plugin every failure is a WeftError; its WEFT_ERR_* code
 * decides the CNI code (cniCode), except a delegate's failure, which keeps
 * the code the delegate reported.
 */
import { WeftError, type WeftErrorCode } from '../common/errors.js';

/** The spec's well-known codes (0-99), and weft's own (100+, free for plugins). */
export const CNI_CODE = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENVIRONMENT: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  LIMITED_CONNECTIVITY: 51,
  /** The delegate could not be run, or failed without a CNI error object of its own. */
  DELEGATE_FAILED: 100,
  /** CHECK: the attachment is not as ADD left it. */
  CHECK_FAILED: 101,
  /** Not a WeftError: a bug in weft-cni (Go plugins use the same number for theirs). */
  INTERNAL: 999,
} as const;

/** A CNI error result, as printed on stdout. */
export interface CniErrorResult {
  readonly cniVersion: string;
  readonly code: number;
  readonly msg: string;
  readonly details: string;
}

/**
 * A WeftError with what a CNI error object needs beyond the message:
 * `details` (the longer explanation) and, for a delegate's failure, the CNI
 * code the delegate reported.
 */
export class CniError extends WeftError {
  readonly details: string;
  readonly cniCode: number | undefined;
  constructor(code: WeftErrorCode, message: string, options: { details?: string; cniCode?: number; cause?: unknown } = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CniError';
    this.details = options.details ?? '';
    this.cniCode = options.cniCode;
  }
}

const BY_WEFT_CODE: Partial<Record<WeftErrorCode, number>> = {
  WEFT_ERR_CNI_VERSION: CNI_CODE.INCOMPATIBLE_VERSION,
  WEFT_ERR_CNI_ENV: CNI_CODE.INVALID_ENVIRONMENT,
  WEFT_ERR_CNI_IO: CNI_CODE.IO_FAILURE,
  WEFT_ERR_CNI_DECODE: CNI_CODE.DECODING_FAILURE,
  WEFT_ERR_CONFIG_INVALID: CNI_CODE.INVALID_NETWORK_CONFIG,
  WEFT_ERR_ADDRESS_INVALID: CNI_CODE.INVALID_NETWORK_CONFIG,
  WEFT_ERR_SUBNET_FILE_INVALID: CNI_CODE.INVALID_NETWORK_CONFIG,
  // weftd writes the file once it holds a lease: the condition clears by itself.
  WEFT_ERR_SUBNET_FILE_MISSING: CNI_CODE.TRY_AGAIN_LATER,
  WEFT_ERR_CNI_DELEGATE: CNI_CODE.DELEGATE_FAILED,
  WEFT_ERR_CNI_CHECK: CNI_CODE.CHECK_FAILED,
};

/** What makes STATUS answer "not available" (50): the plugin cannot serve an ADD now. */
const NOT_AVAILABLE: ReadonlySet<WeftErrorCode> = new Set<WeftErrorCode>(['WEFT_ERR_SUBNET_FILE_MISSING', 'WEFT_ERR_SUBNET_FILE_INVALID', 'WEFT_ERR_CNI_DELEGATE']);

/** The CNI code for `err` when `command` failed with it. */
export function cniCode(err: unknown, command: string): number {
  if (!(err instanceof WeftError)) return CNI_CODE.INTERNAL;
  if (err instanceof CniError && err.cniCode !== undefined) return err.cniCode;
  if (command === 'STATUS' && NOT_AVAILABLE.has(err.code)) return CNI_CODE.NOT_AVAILABLE;
  return BY_WEFT_CODE[err.code] ?? CNI_CODE.INTERNAL;
}

/**
 * The error object for `err`. `msg` is the error's message (it names what is
 * wrong and where); `details` the longer explanation when there is one, else
 * the WEFT_ERR_* code. Anything that is not a WeftError is a bug: its message
 * is kept, its stack is not.
 */
export function errorResult(err: unknown, command: string, cniVersion: string): CniErrorResult {
  const code = cniCode(err, command);
  if (!(err instanceof WeftError)) {
    const message = err instanceof Error ? err.message : String(err);
    return { cniVersion, code, msg: `internal error in weft-cni: ${message}`, details: 'not a failure weft-cni knows: please report it' };
  }
  const details = err instanceof CniError && err.details ? err.details : err.code;
  return { cniVersion, code, msg: err.message, details };
}
