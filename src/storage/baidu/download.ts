/**
 * Downloading a copy back: the dlink from filemetas, requested with the
 * client identity Baidu requires (`User-Agent: pan.baidu.com`), its 302 to
 * the CDN followed by hand with the same identity, and a broken connection
 * resumed with `Range` from the last byte delivered (from a server that
 * ignores Range and sends the file whole, the bytes already delivered are
 * read again and dropped). The stream delivers
 * exactly `size` bytes or errors; it never ends short.
 *
 * An expired or damaged dlink is replaced by a fresh one; a refused token is
 * refreshed once. Each hop must answer within the API's request timeout,
 * and a body that delivers nothing for `readIdleMs` is dropped and resumed
 * like a broken one: a stalled server never hangs a restore. Addresses
 * never reach a log line or a message.
 */

import { StorageError } from "../../errors.ts";
import type { TransferOptions } from "../storage.ts";
import type { BaiduApi } from "./api.ts";
import { BaiduNetworkError, classify, parseApiError } from "./errors.ts";
import { backoffMs, parseAnswer } from "./http.ts";

export const DOWNLOAD_USER_AGENT = "pan.baidu.com";
const MAX_REDIRECTS = 5;
/** A download that delivers no byte for this long is resumed. */
export const READ_IDLE_MS = 60_000;

export interface DownloadTarget {
  remotePath: string;
  fsId: string;
  size: number;
}

export interface DownloadOptions extends TransferOptions {
  /** Resume when no byte came for this long (default 60 s). */
  readIdleMs?: number;
}

/** A stream of the copy's bytes that resumes by itself. */
export function downloadStream(
  api: BaiduApi,
  target: DownloadTarget,
  options: DownloadOptions = {},
): ReadableStream<Uint8Array> {
  const http = api.http;
  const readIdleMs = options.readIdleMs ?? READ_IDLE_MS;
  let received = 0;
  let failures = 0;
  let dlink: string | undefined;
  let refreshed = false;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** Bytes to drop from the start of a body the server sent whole. */
  let skip = 0;
  // Aborts the hop in flight: the caller's signal, the answer's deadline,
  // or a body that went quiet.
  let hop: AbortController | undefined;
  const onAbort = () => hop?.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const drop = () => {
    reader?.cancel().catch(() => {});
    reader = undefined;
    hop?.abort(new Error("dropped"));
    hop = undefined;
  };

  const fail = (message: string, failure: "retry" | "stop" = "retry") =>
    new StorageError(
      `Cannot download "${target.remotePath}" from Baidu Netdisk: ${message}`,
      failure,
    );

  const connect = async (): Promise<void> => {
    if (!dlink) {
      const [meta] = await api.filemetas([target.fsId], true, options.signal);
      if (!meta?.dlink) throw fail("Baidu gave no download address");
      dlink = meta.dlink;
    }
    const token = await http.tokens.token();
    const headers: Record<string, string> = {
      "user-agent": DOWNLOAD_USER_AGENT,
    };
    if (received > 0) headers.range = `bytes=${received}-`;
    let url = `${dlink}${dlink.includes("?") ? "&" : "?"}access_token=${
      encodeURIComponent(token)
    }`;
    let res: Response | undefined;
    for (let hops = 0; hops <= MAX_REDIRECTS; hops++) {
      const current = new AbortController();
      hop = current;
      const timer = http.timeoutMs > 0
        ? setTimeout(
          () => current.abort(new Error("no answer in time")),
          http.timeoutMs,
        )
        : undefined;
      try {
        res = await http.fetch(url, {
          headers,
          redirect: "manual",
          signal: current.signal,
        });
      } catch (err) {
        options.signal?.throwIfAborted();
        throw new BaiduNetworkError("the download", err);
      } finally {
        clearTimeout(timer);
      }
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) break;
      await res.body?.cancel();
      url = new URL(location, url).toString();
    }
    res = res!;
    http.log.debug(
      `baidu GET download ${res.status} from byte ${received}`,
    );
    if (res.status === 200) {
      // Whole file: the first try, or a server that ignored Range; then the
      // bytes already delivered are read again and dropped.
      if (received > 0) {
        http.log.debug(
          `baidu download: the server ignored Range; skipping ${received} bytes`,
        );
      }
      skip = received;
      reader = res.body!.getReader();
      return;
    }
    if (res.status === 206) {
      const range = /bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
      if (!range || Number(range[1]) !== received) {
        await res.body?.cancel();
        throw fail("the server resumed at the wrong byte");
      }
      reader = res.body!.getReader();
      return;
    }
    const body = parseAnswer(await res.text().catch(() => "")) ?? {};
    const info = parseApiError(body, res.status) ??
      { code: res.status, message: `HTTP ${res.status}` };
    const kind = classify(info, { pcs: true, status: res.status });
    if (kind === "auth" && !refreshed) {
      refreshed = true;
      await http.tokens.refreshAfter(token);
      throw new Retry();
    }
    if (kind === "limit" || kind === "quota") {
      throw fail(
        `error ${info.code}${info.message ? ` ${info.message}` : ""}`,
        "stop",
      );
    }
    if (kind === "dlink" || res.status === 403 || res.status === 404) {
      if (info.code === 31326) {
        throw Object.assign(
          fail("Baidu refused the client identity (error 31326)"),
          { final: true },
        );
      }
      dlink = undefined; // ask for a fresh address on the next try
    }
    throw fail(`error ${info.code}${info.message ? ` ${info.message}` : ""}`);
  };

  /** The next piece, or an error once the body has been quiet too long. */
  const read = async (r: ReadableStreamDefaultReader<Uint8Array>) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const quiet = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BaiduNetworkError(
              "the download",
              new Error(`no byte came for ${readIdleMs / 1000} s`),
            ),
          ),
        readIdleMs,
      );
    });
    try {
      return await Promise.race([r.read(), quiet]);
    } finally {
      clearTimeout(timer);
    }
  };

  const finish = () => {
    options.signal?.removeEventListener("abort", onAbort);
    drop();
  };

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        try {
          options.signal?.throwIfAborted();
        } catch (err) {
          finish();
          throw err;
        }
        try {
          if (!reader) await connect();
          const next = await read(reader!);
          let value = next.value;
          if (!next.done && skip > 0) {
            const n = Math.min(skip, value!.length);
            skip -= n;
            value = value!.subarray(n);
            if (value.length === 0) continue;
          }
          if (next.done) {
            reader = undefined;
            if (received === target.size) {
              finish();
              controller.close();
              return;
            }
            throw new BaiduNetworkError(
              "the download",
              new Error(`the connection ended at byte ${received}`),
            );
          }
          value = value!;
          if (received + value.length > target.size) {
            throw fail(
              `Baidu sent more bytes than the copy has (${target.size})`,
            );
          }
          received += value.length;
          failures = 0;
          options.onProgress?.(value.length);
          controller.enqueue(value);
          return;
        } catch (err) {
          drop();
          if (options.signal?.aborted) {
            finish();
            throw options.signal.reason;
          }
          if (err instanceof Retry) continue;
          const giveUp = (err as { final?: boolean }).final ||
            (err instanceof StorageError && err.failure === "stop") ||
            ++failures > http.retries;
          if (giveUp) {
            finish();
            throw err instanceof StorageError ? err : fail(
              err instanceof Error ? err.message : String(err),
            );
          }
          http.log.warn(
            `The download of "${target.remotePath}" broke at byte ${received}; resuming (try ${
              failures + 1
            })`,
          );
          await http.clock.sleep(
            backoffMs(failures, "transient"),
            options.signal,
          );
        }
      }
    },
    async cancel() {
      await reader?.cancel().catch(() => {});
      finish();
    },
  });
}

class Retry extends Error {}
