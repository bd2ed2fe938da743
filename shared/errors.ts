/**
 * Errors with a stable `code` and a `retryable` flag, decided in one table.
 *
 * Errors cross thread and process boundaries as plain data ({@link ErrorData}) and are rebuilt
 * on the other side with {@link fromErrorData}, so a worker thread's failure keeps its code.
 */

/** Every error code the system can report. The table below decides how each is handled. */
export const ERROR_TABLE = {
  /** Bad command-line or parameter value. */
  BAD_OPTION: { retryable: false, exitCode: 2 },
  /** Input file or URL does not exist or cannot be opened. */
  INPUT_NOT_FOUND: { retryable: false, exitCode: 3 },
  /** Input exists but is not a usable raster (truncated, not a TIFF, wrong band count or type). */
  BAD_INPUT: { retryable: false, exitCode: 3 },
  /**
   * Input whose bytes are there but cannot be decoded (a corrupt DEFLATE/LZW stream in a tile):
   * reading it again gives the same garbage, so it is never retried.
   */
  CORRUPT_INPUT: { retryable: false, exitCode: 3 },
  /** Product mask is not on the scene's grid. */
  GRID_MISMATCH: { retryable: false, exitCode: 3 },
  /** Model file missing, an LFS pointer, not ONNX, or with shapes that disagree with its manifest. */
  BAD_MODEL: { retryable: false, exitCode: 4 },
  /** A job names a source outside the worker's allowed roots. */
  FORBIDDEN_SOURCE: { retryable: false, exitCode: 5 },
  /** A message that fails size or schema validation. */
  BAD_MESSAGE: { retryable: false, exitCode: 6 },
  /** Transient I/O trouble (connection reset or closed mid-response, timeouts, HTTP 5xx, 408, 429): try again later. */
  TRANSIENT_IO: { retryable: true, exitCode: 7 },
  /** Inference failed inside onnxruntime. */
  INFERENCE_FAILED: { retryable: true, exitCode: 8 },
  /** A chip exhausted its deliveries and went to the dead-letter stream. */
  DEAD_LETTER: { retryable: false, exitCode: 9 },
  /** Output could not be written. */
  OUTPUT_FAILED: { retryable: false, exitCode: 10 },
  /** Anything unforeseen: treated as transient once, so a flaky node does not fail a scene. */
  INTERNAL: { retryable: true, exitCode: 1 },
} as const;

export type ErrorCode = keyof typeof ERROR_TABLE;

/** The plain-data form of an error, safe to post between threads and processes. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
}

/** An error the system understands: a stable code, a message for people, and whether to retry. */
export class CloudMaskError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CloudMaskError';
    this.code = code;
  }
  get retryable(): boolean {
    return ERROR_TABLE[this.code].retryable;
  }
  get exitCode(): number {
    return ERROR_TABLE[this.code].exitCode;
  }
  toData(): ErrorData {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_TABLE, value);
}

/** Any thrown value as plain data; unknown errors become INTERNAL with their message. */
export function toErrorData(err: unknown): ErrorData {
  if (err instanceof CloudMaskError) return err.toData();
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e && isErrorCode(e.code) && typeof e.message === 'string') return { code: e.code, message: e.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message };
}

/** Rebuilds an error that crossed a boundary as data. */
export function fromErrorData(data: ErrorData): CloudMaskError {
  return new CloudMaskError(isErrorCode(data.code) ? data.code : 'INTERNAL', data.message);
}

/** Wraps anything thrown into a CloudMaskError, keeping a CloudMaskError as it is. */
export function asCloudMaskError(err: unknown): CloudMaskError {
  return err instanceof CloudMaskError ? err : fromErrorData(toErrorData(err));
}
