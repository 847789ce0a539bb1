/**
 * Baidu's error answers, read in all their shapes, and sorted into what the
 * client must do about them.
 *
 * The API answers errors four ways: `{"errno": -6}` (xpan, usually with HTTP
 * 200), `{"error_code": 31064, "error_msg": "..."}` (PCS hosts, with real
 * 4xx/5xx), `{"error": "invalid_grant", "error_description": "..."}` (OAuth)
 * and `{"error_no": -6}` (search). `parseApiError` reads all of them;
 * `classify` turns a number into a `BaiduErrorKind`. Messages built here
 * never contain a token or an address with its query.
 */

import { AgentError, StorageError } from "../../errors.ts";
import { redact } from "../../log.ts";

/** What the client does about an error. */
export type BaiduErrorKind =
  | "auth" // refresh the token once, then ask for a new login
  | "rate" // throttled: back off for long, then retry
  | "quota" // the drive is full: stop the run
  | "limit" // the account's request or traffic cap: stop the run
  | "too_large" // the file is over the member limit: skip it
  | "name" // the path or name is refused: skip the order
  | "session" // the upload session is gone: precreate again
  | "not_found"
  | "exists"
  | "transient" // server error or broken connection: retry
  | "dlink" // download address expired or bad: ask for a new one
  | "fatal"; // a request we built wrong: fix the code

export interface ApiErrorInfo {
  /** The errno or error_code, or the OAuth error string. */
  code: number | string;
  message: string;
}

/**
 * The error in a parsed answer, or undefined when it is a success. `status`
 * is the HTTP status, used when the body says nothing.
 */
export function parseApiError(
  body: unknown,
  status: number,
): ApiErrorInfo | undefined {
  const b = (body && typeof body === "object" ? body : {}) as Record<
    string,
    unknown
  >;
  const msg = (v: unknown) => (typeof v === "string" ? v : "");
  if (typeof b.error === "string" && b.error !== "") {
    return { code: b.error, message: msg(b.error_description) };
  }
  for (const key of ["errno", "error_code", "error_no"]) {
    const v = b[key];
    const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n === "number" && n !== 0) {
      return {
        code: n,
        message: msg(b.errmsg) || msg(b.error_msg) || msg(b.show_msg),
      };
    }
  }
  if (status >= 400) return { code: status, message: `HTTP ${status}` };
  return undefined;
}

const AUTH = new Set([-6, 6, 20016, 20017, 31045, 31024, 20011]);
/** Old PCS token codes; only ever read from PCS hosts (error_code). */
const PCS_AUTH = new Set([110, 111]);
const RATE = new Set([31034, 20012]);
/** Request count and traffic caps (class Q): waiting minutes does not help. */
const LIMIT = new Set([31219, 31220]);
const QUOTA = new Set([-10, 31112, 31218]);
const NAME = new Set([-7, 31062, 20022, 20020, 20023, 31064]);
const SESSION = new Set([31363, 31355, 31190, 31352]);
const NOT_FOUND = new Set([-9, -3, 31066, 31063]);
const EXISTS = new Set([-8, 31061]);
const TRANSIENT = new Set([
  111,
  31212,
  31213,
  31233,
  31296,
  31341,
  42212,
  42905,
]);
const DLINK = new Set([31360, 31362]);

/**
 * Sorts an error. `pcs` says the answer came from a PCS host, where 110 and
 * 111 mean a bad token (on xpan hosts, errno 111 means "another async task
 * is running" and is retried, not refreshed).
 */
export function classify(
  info: ApiErrorInfo,
  options: { pcs?: boolean; status?: number } = {},
): BaiduErrorKind {
  const { code, message } = info;
  if (typeof code === "string") {
    return code === "Trigger security policy" ? "rate" : "auth";
  }
  if (options.pcs && PCS_AUTH.has(code)) return "auth";
  if (AUTH.has(code)) return "auth";
  if (code === 31299) {
    // Two meanings: the documented "first chunk smaller than 4MB", a
    // request built wrong, and the upload session running out, seen as
    // "Expried Time Not Match" (sic), with or without "... has expire".
    return /chunk|\b4 ?mb\b/i.test(message) ? "fatal" : "session";
  }
  if (code === 31365) return "too_large";
  if (RATE.has(code)) return "rate";
  if (LIMIT.has(code)) return "limit";
  if (QUOTA.has(code)) return "quota";
  if (NAME.has(code)) return "name";
  if (SESSION.has(code)) return "session";
  if (NOT_FOUND.has(code)) return "not_found";
  if (EXISTS.has(code)) return "exists";
  if (DLINK.has(code)) return "dlink";
  if (TRANSIENT.has(code)) return "transient";
  if (/uploadid/i.test(message) && /invalid|expire|not ?found/i.test(message)) {
    return "session";
  }
  const status = options.status ?? (code >= 100 && code < 600 ? code : 0);
  if (status === 401) return "auth";
  if (status === 408 || status === 429 || status >= 500) return "transient";
  return "fatal";
}

/** An error answer from the API, kept with its kind and request id. */
export class BaiduApiError extends Error {
  readonly kind: BaiduErrorKind;
  readonly code: number | string;
  readonly status: number;
  readonly requestId?: string;
  /** The parsed answer (ids and errnos, never a token), for batch calls. */
  readonly answer?: Record<string, unknown>;
  /** The wait the server asked for in `Retry-After`, if any. */
  retryAfterMs?: number;
  constructor(
    what: string,
    info: ApiErrorInfo,
    kind: BaiduErrorKind,
    status: number,
    requestId?: string,
    answer?: Record<string, unknown>,
  ) {
    // The server's own words may quote an address with its signature or
    // token: only the scrubbed form goes into the message.
    const detail = info.message ? ` ${scrubText(info.message)}` : "";
    super(
      `Baidu Netdisk refused ${what}: error ${info.code}${detail}` +
        (requestId ? ` (request id ${requestId})` : ""),
    );
    this.name = "BaiduApiError";
    this.kind = kind;
    this.code = info.code;
    this.status = status;
    this.requestId = requestId;
    this.answer = answer;
  }
}

/**
 * A network failure or a cut connection. The cause is not kept: runtime
 * errors quote the whole address, token included, so only a scrubbed
 * message survives.
 */
export class BaiduNetworkError extends Error {
  constructor(what: string, cause: unknown) {
    super(
      `Cannot reach Baidu Netdisk for ${what}: ${
        scrubText(cause instanceof Error ? cause.message : String(cause))
      }`,
    );
    this.name = "BaiduNetworkError";
  }
}

/** Drops the query of every address in `text` and redacts what is left. */
export function scrubText(text: string): string {
  return redact(
    text.replace(/(\bhttps?:\/\/[^\s?#)"']*)[?#][^\s)"']*/gi, "$1"),
  );
}

/**
 * The engine's view of an error: API and network errors become
 * `StorageError`s (token trouble, a full drive and the account's request
 * or traffic cap stop the run, a refused
 * name or size skips the order, the rest fails it for the next run); other
 * `AgentError`s and aborts pass through unchanged.
 */
export function toStorageError(err: unknown, what: string): unknown {
  if (err instanceof AgentError) return err;
  if (err instanceof BaiduNetworkError) {
    return new StorageError(`${err.message} (during ${what})`, "retry");
  }
  if (err instanceof BaiduApiError) {
    const failure =
      err.kind === "quota" || err.kind === "auth" || err.kind === "limit"
        ? "stop"
        : err.kind === "name" || err.kind === "too_large"
        ? "skip"
        : "retry";
    return new StorageError(err.message, failure, {
      code: err.code,
      hint: err.kind === "limit"
        ? "Baidu caps the requests and traffic of an account; the next run carries on"
        : undefined,
    });
  }
  return err;
}
