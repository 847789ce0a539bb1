/**
 * One call to the Baidu API, with the policy every call shares: the token in
 * the query, the answer checked in all four error shapes, one refresh and
 * retry on a token error, backoff from the injected clock on throttling,
 * server errors and broken connections (the server's `Retry-After`, when it
 * sends one, sets the wait).
 *
 * It throws `BaiduApiError` (with its kind) or `BaiduNetworkError` once the
 * retries are spent, and `AuthRequiredError` when a refreshed token is
 * refused too. Each call logs one debug line: method, path without query,
 * the API method, status, time and request id.
 */

import { AgentError, AuthRequiredError } from "../../errors.ts";
import type { Clock } from "../../clock.ts";
import type { Logger } from "../../log.ts";
import {
  BaiduApiError,
  type BaiduErrorKind,
  BaiduNetworkError,
  classify,
  parseApiError,
} from "./errors.ts";
import type { TokenSource } from "./tokens.ts";
import {
  type FileBody,
  postFile,
  proxied,
  type RawAnswer,
  readBody,
} from "./part_body.ts";

export interface HttpOptions {
  fetch: typeof fetch;
  clock: Clock;
  log: Logger;
  tokens: TokenSource;
  /** Tries after the first for transient errors and throttling. */
  retries?: number;
  /** Per request; 0 for none. */
  timeoutMs?: number;
}

export interface CallSpec {
  /** Words for messages: "the upload of part 3". */
  what: string;
  method: "GET" | "POST";
  /** Full address without query. */
  url: string;
  query?: Record<string, string>;
  form?: Record<string, string>;
  body?: Uint8Array<ArrayBuffer>;
  /** A body streamed from a file with an exact length (upload parts). */
  file?: FileBody;
  headers?: Record<string, string>;
  /** The answer comes from a PCS host (110/111 mean a bad token there). */
  pcs?: boolean;
  signal?: AbortSignal;
  /** Kinds the caller handles itself, returned without retrying. */
  noRetry?: BaiduErrorKind[];
}

export type Answer = Record<string, unknown>;

export class BaiduHttp {
  readonly clock: Clock;
  readonly log: Logger;
  readonly fetch: typeof fetch;
  readonly tokens: TokenSource;
  readonly retries: number;
  readonly timeoutMs: number;

  constructor(options: HttpOptions) {
    this.fetch = options.fetch;
    this.clock = options.clock;
    this.log = options.log;
    this.tokens = options.tokens;
    this.retries = options.retries ?? 5;
    this.timeoutMs = options.timeoutMs ?? 120_000;
  }

  async call(spec: CallSpec): Promise<Answer> {
    let attempt = 0;
    let refreshed = false;
    for (;;) {
      spec.signal?.throwIfAborted();
      const token = await this.tokens.token();
      const outcome = await this.#once(spec, token);
      if (!(outcome instanceof Error)) return outcome;
      const kind = outcome instanceof BaiduApiError
        ? outcome.kind
        : "transient";
      if (kind === "auth") {
        if (refreshed) {
          throw new AuthRequiredError(
            `Baidu Netdisk still refuses the login after a refresh (${spec.what})`,
          );
        }
        refreshed = true;
        await this.tokens.refreshAfter(token);
        continue;
      }
      const retryable = kind === "transient" || kind === "rate";
      if (!retryable || spec.noRetry?.includes(kind)) throw outcome;
      if (attempt >= this.retries) throw outcome;
      attempt++;
      const wait = outcome instanceof BaiduApiError &&
          outcome.retryAfterMs !== undefined
        ? outcome.retryAfterMs
        : backoffMs(attempt, kind);
      this.log.debug(
        `baidu ${spec.what}: ${kind} error, try ${attempt + 1} in ${wait}ms`,
      );
      await this.clock.sleep(wait, spec.signal);
    }
  }

  async #fetch(url: string, init: RequestInit): Promise<RawAnswer> {
    const res = await this.fetch(url, init);
    return {
      status: res.status,
      header: (name) => res.headers.get(name),
      text: await res.text(),
    };
  }

  async #once(spec: CallSpec, token: string): Promise<Answer | Error> {
    const query = encodeParams({ ...spec.query, access_token: token });
    const init: RequestInit = { method: spec.method, headers: spec.headers };
    if (spec.form) {
      init.body = encodeParams(spec.form);
      init.headers = {
        ...spec.headers,
        "content-type": "application/x-www-form-urlencoded",
      };
    } else if (spec.body) {
      init.body = spec.body;
    }
    const path = new URL(spec.url).pathname;
    const label = `${spec.method} ${path}${
      spec.query?.method ? ` ${spec.query.method}` : ""
    }`;
    const started = Date.now();
    const controller = new AbortController();
    const onAbort = () => controller.abort(spec.signal?.reason);
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = this.timeoutMs > 0
      ? setTimeout(
        () => controller.abort(new Error("timed out")),
        this.timeoutMs,
      )
      : undefined;
    init.signal = controller.signal;
    let status = 0;
    let text: string;
    let requestId: string | undefined;
    let retryAfter: string | null = null;
    try {
      if (spec.file && proxied(spec.url)) {
        init.body = await readBody(spec.file);
      }
      const res = spec.file && !init.body
        ? await postFile(
          `${spec.url}?${query}`,
          spec.headers ?? {},
          spec.file,
          controller.signal,
        )
        : await this.#fetch(`${spec.url}?${query}`, init);
      status = res.status;
      requestId = res.header("x-request-id") ?? undefined;
      retryAfter = res.header("retry-after");
      text = res.text;
    } catch (err) {
      spec.signal?.throwIfAborted();
      if (err instanceof AgentError) throw err;
      this.log.debug(`baidu ${label} failed: connection broken`);
      return new BaiduNetworkError(spec.what, err);
    } finally {
      clearTimeout(timer);
      spec.signal?.removeEventListener("abort", onAbort);
    }
    const body = parseAnswer(text);
    if (body?.request_id !== undefined) requestId = String(body.request_id);
    this.log.debug(
      `baidu ${label} ${status} ${Date.now() - started}ms${
        requestId ? ` request_id=${requestId}` : ""
      }${body ? "" : " (body not JSON)"}`,
    );
    if (!body && status < 400) {
      // "Success" that cannot be read says nothing: a delete may not have
      // happened, a listing may not be empty. Try again like a broken
      // connection.
      return new BaiduApiError(
        spec.what,
        { code: status, message: "the answer is not JSON" },
        "transient",
        status,
        requestId,
      );
    }
    const info = parseApiError(body ?? {}, status);
    if (!info) return body!;
    const kind = classify(info, { pcs: spec.pcs, status });
    const error = new BaiduApiError(
      spec.what,
      info,
      kind,
      status,
      requestId,
      body ?? undefined,
    );
    error.retryAfterMs = retryAfterMs(retryAfter);
    return error;
  }
}

/**
 * `k=v&k=v` with every value percent-encoded once, a space as `%20`.
 * `URLSearchParams` writes a space as `+`, which a form decoder reads as a
 * space but a server decoding the query with plain percent-decoding reads
 * as a plus: the path in superfile2's query would then differ from the one
 * precreate got in its body. `%20` means a space to both.
 */
export function encodeParams(params: Record<string, string>): string {
  return Object.entries(params).map(([k, v]) =>
    `${encodeURIComponent(k)}=${encodeURIComponent(v)}`
  ).join("&");
}

/**
 * Parses a JSON answer, keeping 64-bit integer ids (`fs_id`, `request_id`)
 * as strings so they never pass through a float; one written as a decimal
 * or in exponent form (`1.5e18`) is left as a number. Undefined when the
 * body is not a JSON object (an HTML page, a cut answer).
 */
export function parseAnswer(text: string): Answer | undefined {
  const safe = text.replace(
    /"(fs_id|fsid|request_id)"\s*:\s*(-?\d+)(?![\d.eE])/g,
    '"$1":"$2"',
  );
  try {
    const v = JSON.parse(safe);
    return v && typeof v === "object" && !Array.isArray(v)
      ? v as Answer
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A wait the server named in `Retry-After` (whole seconds), capped like the
 * longest backoff; undefined when it named none or a date.
 */
export function retryAfterMs(header: string | null): number | undefined {
  if (header === null || !/^\s*\d+\s*$/.test(header)) return undefined;
  return Math.min(120_000, Number(header) * 1000);
}

/**
 * Exponential with a cap; throttling waits much longer. A `Retry-After` the
 * server sent wins over both.
 */
export function backoffMs(attempt: number, kind: BaiduErrorKind): number {
  if (kind === "rate") return Math.min(120_000, 30_000 * attempt);
  return Math.min(60_000, 1000 * 2 ** (attempt - 1));
}
