/**
 * Sends one superfile2 part without holding it in memory: a POST through
 * node:http / node:https with an exact `Content-Length` (Baidu refuses
 * chunked bodies, and `fetch` sends every stream chunked), whose body is the
 * multipart head, the part read from the file at its offset in small
 * pieces, and the multipart tail.
 *
 * `fetch` with a byte-array body copies each part into native memory that
 * the allocator keeps; streaming from the file keeps only a few small
 * pieces in flight per part whatever the part size.
 *
 * node:http ignores HTTP(S)_PROXY, which `fetch` honours; with a proxy set
 * the part goes through `fetch` as one byte array (`readBody`) so every
 * call still takes the proxy.
 */

import * as nodeHttp from "node:http";
import * as nodeHttps from "node:https";
import { StorageError } from "../../errors.ts";

/** What a part request sends: `head`, file bytes, `tail`. */
export interface FileBody {
  head: Uint8Array;
  tail: Uint8Array;
  path: string;
  offset: number;
  length: number;
}

/** The parts of an answer the API layer reads. */
export interface RawAnswer {
  status: number;
  header(name: string): string | null;
  text: string;
}

/** Size of each read from the file while a part is sent. */
const PIECE = 256 * 1024;

export function postFile(
  url: string,
  headers: Record<string, string>,
  body: FileBody,
  signal: AbortSignal,
): Promise<RawAnswer> {
  return new Promise<RawAnswer>((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? nodeHttps : nodeHttp;
    const length = body.head.length + body.length + body.tail.length;
    let settled = false;
    const req = mod.request(u, {
      method: "POST",
      headers: { ...headers, "content-length": String(length) },
      agent: false,
    });
    const finish = (err: unknown, answer?: RawAnswer) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      if (err !== undefined) {
        req.destroy();
        reject(err);
      } else resolve(answer!);
    };
    const onAbort = () => finish(signal.reason ?? new Error("aborted"));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", (err) => finish(err));
    req.on("response", (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("error", (err) => finish(err));
      res.on("end", () => {
        let n = 0;
        for (const c of chunks) n += c.length;
        const all = new Uint8Array(n);
        n = 0;
        for (const c of chunks) {
          all.set(c, n);
          n += c.length;
        }
        finish(undefined, {
          status: res.statusCode ?? 0,
          header: (name) => {
            const v = res.headers[name.toLowerCase()];
            return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
          },
          text: new TextDecoder().decode(all),
        });
      });
    });
    writeBody(req, body, () => settled).then(
      () => req.end(),
      (err) => finish(err),
    );
  });
}

async function writeBody(
  req: nodeHttp.ClientRequest,
  body: FileBody,
  stopped: () => boolean,
): Promise<void> {
  /** Resolves once the request has taken `bytes` (its write callback). */
  const write = (bytes: Uint8Array) => {
    if (stopped() || req.destroyed) {
      return Promise.reject(new Error("the request ended"));
    }
    return new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new Error("the request ended"));
      req.once("close", onClose);
      req.write(bytes, (err) => {
        req.off("close", onClose);
        if (err) reject(err);
        else resolve();
      });
    });
  };
  await write(body.head);
  {
    using file = await Deno.open(body.path, { read: true });
    await file.seek(body.offset, Deno.SeekMode.Start);
    let left = body.length;
    // Two pieces in turn: one is read while the other is sent, and a piece
    // is filled again only once the request has let go of it (its write
    // callback), so the part costs two pieces of memory, not a fresh one
    // per read left for the garbage collector.
    const pieces = [new Uint8Array(PIECE), new Uint8Array(PIECE)];
    const released: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
    for (let turn = 0; left > 0; turn ^= 1) {
      await released[turn];
      const piece = pieces[turn].subarray(0, Math.min(PIECE, left));
      let filled = 0;
      while (filled < piece.length) {
        const n = await file.read(piece.subarray(filled));
        if (n === null) {
          throw new StorageError(
            `The image "${body.path}" became shorter while it was being uploaded; it will be tried again`,
            "retry",
          );
        }
        filled += n;
      }
      const sent = write(piece);
      sent.catch(() => {}); // awaited at this piece's next turn, or below
      released[turn] = sent;
      left -= piece.length;
    }
    await Promise.all(released);
  }
  await write(body.tail);
}

/** The whole request body in memory, for sending through `fetch`. */
export async function readBody(
  body: FileBody,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(body.head.length + body.length + body.tail.length);
  out.set(body.head, 0);
  const part = out.subarray(body.head.length, body.head.length + body.length);
  {
    using file = await Deno.open(body.path, { read: true });
    await file.seek(body.offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < part.length) {
      const n = await file.read(part.subarray(filled));
      if (n === null) {
        throw new StorageError(
          `The image "${body.path}" became shorter while it was being uploaded; it will be tried again`,
          "retry",
        );
      }
      filled += n;
    }
  }
  out.set(body.tail, body.head.length + body.length);
  return out;
}

/** True when the environment sends `url` through a proxy for `fetch`. */
export function proxied(url: string): boolean {
  const env = (name: string) => {
    try {
      return Deno.env.get(name) ?? Deno.env.get(name.toLowerCase());
    } catch {
      return undefined;
    }
  };
  const u = new URL(url);
  const proxy = u.protocol === "https:"
    ? env("HTTPS_PROXY") ?? env("ALL_PROXY")
    : env("HTTP_PROXY") ?? env("ALL_PROXY");
  if (!proxy) return false;
  const host = u.hostname.toLowerCase();
  const none = (env("NO_PROXY") ?? "").split(",").map((x) => x.trim())
    .filter(Boolean);
  return !none.some((n) =>
    n === "*" || host === n.replace(/^\./, "") ||
    host.endsWith(n.startsWith(".") ? n : `.${n}`)
  );
}
